//! Task-level CPU and memory: unit strings (`"1 vCPU"`, `"2 GB"`) parsed into typed CPU units
//! and MiB, and the Fargate table of valid cpu/memory pairs.
//!
//! Ref: ecs.json `RegisterTaskDefinitionRequest.cpu` / `.memory` ("It can be expressed as an
//! integer using CPU units (for example, 1024) or as a string using vCPUs (for example, 1 vCPU
//! or 1 vcpu) ... String values are converted to an integer ... when the task definition is
//! registered"; memory likewise in MiB or GB), and the Fargate table in the same members.

use std::fmt;

/// CPU units: 1024 units are one vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuUnits(pub u32);

/// Memory in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemoryMib(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("empty value")]
    Empty,
    #[error("{0:?} is not a number of CPU units (1024) or vCPUs (\"1 vCPU\")")]
    BadCpu(String),
    #[error("{0:?} is not an amount of memory in MiB (2048) or GB (\"2 GB\")")]
    BadMemory(String),
    #[error("{0:?} is not a whole number of {1}")]
    Fractional(String, &'static str),
}

impl CpuUnits {
    pub fn parse(raw: &str) -> Result<CpuUnits, UnitError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(UnitError::Empty);
        }
        let lower = s.to_ascii_lowercase();
        let (number, scale) = match lower.strip_suffix("vcpu") {
            Some(n) => (n.trim_end(), 1024.0),
            None => (lower.as_str(), 1.0),
        };
        let v: f64 = number
            .parse()
            .map_err(|_| UnitError::BadCpu(raw.to_string()))?;
        let units = to_whole(v * scale, raw, "CPU units")?;
        u32::try_from(units)
            .map(CpuUnits)
            .map_err(|_| UnitError::BadCpu(raw.to_string()))
    }

    /// vCPUs, as the agent's `task.CPU` (units / 1024).
    #[allow(
        dead_code,
        reason = "used by the task executor's cgroup setup (run-task)"
    )]
    pub fn vcpus(self) -> f64 {
        f64::from(self.0) / 1024.0
    }
}

impl MemoryMib {
    pub fn parse(raw: &str) -> Result<MemoryMib, UnitError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(UnitError::Empty);
        }
        let lower = s.to_ascii_lowercase();
        let suffixes: [(&str, f64); 5] = [
            ("gib", 1024.0),
            ("gb", 1024.0),
            ("mib", 1.0),
            ("mb", 1.0),
            ("m", 1.0),
        ];
        let (number, scale) = suffixes
            .iter()
            .find_map(|(suffix, scale)| lower.strip_suffix(suffix).map(|n| (n.trim_end(), *scale)))
            .unwrap_or((lower.as_str(), 1.0));
        let v: f64 = number
            .parse()
            .map_err(|_| UnitError::BadMemory(raw.to_string()))?;
        to_whole(v * scale, raw, "MiB").map(MemoryMib)
    }

    #[allow(
        dead_code,
        reason = "used by the task executor's cgroup setup (run-task)"
    )]
    pub fn bytes(self) -> u64 {
        self.0.saturating_mul(1 << 20)
    }
}

fn to_whole(v: f64, raw: &str, what: &'static str) -> Result<u64, UnitError> {
    if !v.is_finite() || !(0.0..=1e15).contains(&v) {
        return Err(if what == "MiB" {
            UnitError::BadMemory(raw.to_string())
        } else {
            UnitError::BadCpu(raw.to_string())
        });
    }
    let rounded = v.round();
    if (v - rounded).abs() > 1e-6 {
        return Err(UnitError::Fractional(raw.to_string(), what));
    }
    Ok(rounded as u64)
}

impl fmt::Display for CpuUnits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for MemoryMib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Memory choices Fargate offers for one CPU size: `min..=max` in steps of `step` MiB, or
/// the explicit list for 256 units.
struct FargateRow {
    cpu: u32,
    min: u64,
    max: u64,
    step: u64,
}

/// Ref: ecs.json `TaskDefinition.cpu` / `.memory`; ../shared/notes/ecs-reference.md §2.
/// 256 → 512, 1024, 2048 (listed explicitly below, not a stepped range).
const FARGATE_TABLE: &[FargateRow] = &[
    FargateRow {
        cpu: 512,
        min: 1024,
        max: 4096,
        step: 1024,
    },
    FargateRow {
        cpu: 1024,
        min: 2048,
        max: 8192,
        step: 1024,
    },
    FargateRow {
        cpu: 2048,
        min: 4096,
        max: 16384,
        step: 1024,
    },
    FargateRow {
        cpu: 4096,
        min: 8192,
        max: 30720,
        step: 1024,
    },
    FargateRow {
        cpu: 8192,
        min: 16384,
        max: 61440,
        step: 4096,
    },
    FargateRow {
        cpu: 16384,
        min: 32768,
        max: 122880,
        step: 8192,
    },
];

/// Whether Fargate has a task size with exactly this cpu and memory.
pub fn fargate_pair_is_valid(cpu: CpuUnits, memory: MemoryMib) -> bool {
    if cpu.0 == 256 {
        return matches!(memory.0, 512 | 1024 | 2048);
    }
    FARGATE_TABLE.iter().any(|r| {
        r.cpu == cpu.0
            && memory.0 >= r.min
            && memory.0 <= r.max
            && (memory.0 - r.min).is_multiple_of(r.step)
    })
}

/// The memory values Fargate accepts with this cpu, in words, or `None` if the cpu value
/// itself is not a Fargate size.
pub fn fargate_memory_choices(cpu: CpuUnits) -> Option<String> {
    if cpu.0 == 256 {
        return Some("512, 1024 or 2048".to_string());
    }
    FARGATE_TABLE
        .iter()
        .find(|r| r.cpu == cpu.0)
        .map(|r| format!("{} to {} in steps of {}", r.min, r.max, r.step))
}

pub const FARGATE_CPU_VALUES: &str = "256, 512, 1024, 2048, 4096, 8192 or 16384";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_forms() {
        assert_eq!(CpuUnits::parse("1024"), Ok(CpuUnits(1024)));
        assert_eq!(CpuUnits::parse(" 256 "), Ok(CpuUnits(256)));
        assert_eq!(CpuUnits::parse("1 vcpu"), Ok(CpuUnits(1024)));
        assert_eq!(CpuUnits::parse("1 vCPU"), Ok(CpuUnits(1024)));
        assert_eq!(CpuUnits::parse("2vCPU"), Ok(CpuUnits(2048)));
        assert_eq!(CpuUnits::parse(".25 vCPU"), Ok(CpuUnits(256)));
        assert_eq!(CpuUnits::parse("0.125 vcpu"), Ok(CpuUnits(128)));
        assert!(CpuUnits::parse("").is_err());
        assert!(CpuUnits::parse("lots").is_err());
        assert!(CpuUnits::parse("-1").is_err());
        assert!(CpuUnits::parse("0.3 vcpu").is_err());
        assert!(CpuUnits::parse("NaN").is_err());
        assert!(CpuUnits::parse("99999999999").is_err());
    }

    #[test]
    fn memory_forms() {
        assert_eq!(MemoryMib::parse("2048"), Ok(MemoryMib(2048)));
        assert_eq!(MemoryMib::parse("2 GB"), Ok(MemoryMib(2048)));
        assert_eq!(MemoryMib::parse("2GB"), Ok(MemoryMib(2048)));
        assert_eq!(MemoryMib::parse("0.5 GB"), Ok(MemoryMib(512)));
        assert_eq!(MemoryMib::parse("1 gib"), Ok(MemoryMib(1024)));
        assert_eq!(MemoryMib::parse("512 MiB"), Ok(MemoryMib(512)));
        assert_eq!(MemoryMib::parse("512MB"), Ok(MemoryMib(512)));
        assert!(MemoryMib::parse("a lot").is_err());
        assert!(MemoryMib::parse("1.5").is_err());
        assert!(MemoryMib::parse("inf GB").is_err());
        assert_eq!(MemoryMib(2).bytes(), 2 * 1024 * 1024);
    }

    #[test]
    fn fargate_table() {
        let ok = |c, m| fargate_pair_is_valid(CpuUnits(c), MemoryMib(m));
        assert!(ok(256, 512) && ok(256, 1024) && ok(256, 2048));
        assert!(!ok(256, 3072) && !ok(256, 256) && !ok(256, 1536));
        assert!(ok(512, 1024) && ok(512, 4096) && !ok(512, 5120) && !ok(512, 512));
        assert!(ok(1024, 2048) && ok(1024, 8192) && !ok(1024, 1024) && !ok(1024, 2560));
        assert!(ok(2048, 4096) && ok(2048, 16384) && !ok(2048, 17408));
        assert!(ok(4096, 8192) && ok(4096, 30720) && !ok(4096, 31744));
        assert!(ok(8192, 16384) && ok(8192, 20480) && ok(8192, 61440) && !ok(8192, 17408));
        assert!(ok(16384, 32768) && ok(16384, 40960) && ok(16384, 122880));
        assert!(!ok(16384, 36864) && !ok(128, 512) && !ok(3072, 8192));
        assert_eq!(fargate_memory_choices(CpuUnits(3000)), None);
        assert_eq!(
            fargate_memory_choices(CpuUnits(256)).unwrap(),
            "512, 1024 or 2048"
        );
    }
}
