//! Amazon ECR: every input member of the operations serve routes.

#[allow(unused_imports)]
use super::{Row, Service, ap, na, none, rf};

pub static ECR: Service = Service {
    slug: "ecr",
    title: "Amazon ECR",
    model: ("ecr", "2015-09-21"),
    operations: || crate::ecr::api::OPERATIONS.to_vec(),
    rows: ROWS,
    elsewhere: none,
};

pub static ROWS: &[Row] = &[];
