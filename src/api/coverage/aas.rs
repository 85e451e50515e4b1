//! Application Auto Scaling: every input member of the operations serve routes.

#[allow(unused_imports)]
use super::{Row, Service, ap, na, none, rf};

pub static AAS: Service = Service {
    slug: "application-autoscaling",
    title: "Application Auto Scaling",
    model: ("application-autoscaling", "2016-02-06"),
    operations: || crate::autoscaling::ops::OPERATIONS.to_vec(),
    rows: ROWS,
    elsewhere: none,
};

pub static ROWS: &[Row] = &[];
