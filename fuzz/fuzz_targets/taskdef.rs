//! Task definitions in every shape users keep them in: parsing and ECS/Fargate
//! validation never panic, for either launch type.
#![no_main]
use libfuzzer_sys::fuzz_target;

// The taskdef modules of the minifargate binary (which has no library target),
// compiled in as they are; mod.rs is left out (it needs the state store).
#[allow(dead_code, unused_imports)]
mod taskdef {
    #[path = "../../../src/taskdef/arn.rs"]
    pub mod arn;
    #[path = "../../../src/taskdef/finding.rs"]
    pub mod finding;
    #[path = "../../../src/taskdef/model.rs"]
    pub mod model;
    #[path = "../../../src/taskdef/normalize.rs"]
    pub mod normalize;
    #[path = "../../../src/taskdef/parse.rs"]
    pub mod parse;
    #[path = "../../../src/taskdef/units.rs"]
    pub mod units;
    #[path = "../../../src/taskdef/validate.rs"]
    pub mod validate;
}

use taskdef::validate::{LaunchType, Options, validate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = taskdef::parse::parse_str(text);
    for launch_type in [None, Some(LaunchType::Fargate), Some(LaunchType::Ec2)] {
        let report = validate(&parsed, &Options { launch_type });
        if report.valid {
            let _ = taskdef::normalize::for_register(&parsed.def);
        }
    }
});
