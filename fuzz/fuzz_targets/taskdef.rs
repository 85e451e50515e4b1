//! Task definitions in every shape users keep them in: parsing and ECS/Fargate
//! validation never panic, for either launch type.
#![no_main]
use libfuzzer_sys::fuzz_target;

// The taskdef modules of the minifargate binary (which has no library target),
// compiled in as they are, at the crate root so their `super::` paths resolve to each
// other; mod.rs is left out (it needs the state store).
#[allow(dead_code, unused_imports)]
#[path = "../../src/taskdef/arn.rs"]
mod arn;
#[allow(dead_code, unused_imports)]
#[path = "../../src/taskdef/finding.rs"]
mod finding;
#[allow(dead_code, unused_imports)]
#[path = "../../src/taskdef/model.rs"]
mod model;
#[allow(dead_code, unused_imports)]
#[path = "../../src/taskdef/normalize.rs"]
mod normalize;
#[allow(dead_code, unused_imports)]
#[path = "../../src/taskdef/parse.rs"]
mod parse;
#[allow(dead_code, unused_imports)]
#[path = "../../src/taskdef/units.rs"]
mod units;
#[allow(dead_code, unused_imports)]
#[path = "../../src/taskdef/validate.rs"]
mod validate;

use validate::{LaunchType, Options, validate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse::parse_str(text);
    for launch_type in [None, Some(LaunchType::Fargate), Some(LaunchType::Ec2)] {
        let report = validate(&parsed, &Options { launch_type });
        if report.valid {
            let _ = normalize::for_register(&parsed.def);
        }
    }
});
