//! AWS Cloud Map: every input member of the operations serve routes.

#[allow(unused_imports)]
use super::{Row, Service, ap, na, none, rf};

pub static CLOUDMAP: Service = Service {
    slug: "servicediscovery",
    title: "AWS Cloud Map",
    model: ("servicediscovery", "2017-03-14"),
    operations: || crate::servicediscovery::ops::OPERATIONS.to_vec(),
    rows: ROWS,
    elsewhere: none,
};

pub static ROWS: &[Row] = &[];
