//! Amazon CloudWatch Logs: every input member of the operations serve routes.

#[allow(unused_imports)]
use super::{Row, Service, ap, na, none, rf};
use crate::ecs::operations::{Op, Service as Svc};

pub static LOGS: Service = Service {
    slug: "logs",
    title: "Amazon CloudWatch Logs",
    model: ("logs", "2014-03-28"),
    operations: || Op::of(Svc::Logs).map(|o| o.name()).collect(),
    rows: ROWS,
    elsewhere: none,
};

pub static ROWS: &[Row] = &[];
