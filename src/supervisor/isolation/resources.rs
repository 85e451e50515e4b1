//! ECS resource maths: task and container cpu units and memory turned into the kernel
//! terms the runtime takes (CFS quota, shares, bytes), as the ECS agent does it.
//! Also the container `reason` for what the runtime reports (an OOM kill).

use runtime::{CpuQuota, ExitStatus, MAX_CPU_SHARES, MIN_CPU_SHARES, TaskLimits};

/// CFS period of the task quota.
/// Ref: amazon-ecs-agent agent/config (ECS_CGROUP_CPU_PERIOD, default 100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The kernel refuses CFS quotas under 1 ms (kernel/sched/core.c min_cfs_quota_period).
const MIN_CPU_QUOTA_US: u64 = 1_000;
/// Units per vCPU.
const UNITS_PER_VCPU: u64 = 1024;

/// Container cpu units → shares: null, 0 and 1 → 2, at most 262144.
/// Ref: amazon-ecs-agent agent/api/task/task_linux.go — container cpu is passed to Docker
/// as CpuShares, clamped to [2, 262144] (the kernel's range).
pub fn container_cpu_shares(units: Option<i64>) -> u64 {
    let units = units.unwrap_or(0).max(0) as u64;
    units.clamp(MIN_CPU_SHARES, MAX_CPU_SHARES)
}

/// Task cpu units → a CFS quota over a 100 ms period (256 units → 25000 µs / 100000 µs).
pub fn task_cpu_quota(units: u64) -> CpuQuota {
    // Ref: amazon-ecs-agent task_linux.go buildExplicitLinuxCPUSpec: quota = vCPU
    // (units / 1024) × period.
    CpuQuota {
        quota_us: (units * CPU_PERIOD_US / UNITS_PER_VCPU).max(MIN_CPU_QUOTA_US),
        period_us: CPU_PERIOD_US,
    }
}

/// A task without task cpu: its cgroup's shares are the sum of its containers' cpu
/// units, each counted as at least 2; `None` without containers.
/// Ref: amazon-ecs-agent task_linux.go buildImplicitLinuxCPUSpec.
pub fn implicit_task_shares(container_units: &[Option<i64>]) -> Option<u64> {
    if container_units.is_empty() {
        return None;
    }
    let sum: u64 = container_units
        .iter()
        .map(|u| u.unwrap_or(0).max(0) as u64)
        .map(|u| u.max(MIN_CPU_SHARES))
        .sum();
    Some(sum.min(MAX_CPU_SHARES))
}

/// The task cgroup's limits: a CFS quota from task cpu, or else shares from the
/// containers' cpu; the task memory as the hard limit.
pub fn task_limits(
    task_cpu_units: Option<u64>,
    container_cpu_units: &[Option<i64>],
    memory_bytes: Option<u64>,
) -> TaskLimits {
    let cpu_quota = task_cpu_units.map(task_cpu_quota);
    TaskLimits {
        cpu_quota,
        cpu_shares: cpu_quota
            .is_none()
            .then(|| implicit_task_shares(container_cpu_units))
            .flatten(),
        memory: memory_bytes,
        pids: None,
    }
}

/// The ECS container `reason` for how a container ended: the agent's OOM error after
/// an OOM kill, none otherwise.
pub fn exit_reason(status: &ExitStatus) -> Option<&'static str> {
    status
        .oom_killed
        .then_some(crate::task::reason::OUT_OF_MEMORY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_cpu_units_become_a_quota_over_100_ms() {
        let q = |units| {
            let q = task_cpu_quota(units);
            (q.quota_us, q.period_us)
        };
        assert_eq!(q(256), (25_000, 100_000));
        assert_eq!(q(1024), (100_000, 100_000));
        assert_eq!(q(4096), (400_000, 100_000));
        assert_eq!(q(1), (1_000, 100_000), "the kernel's 1 ms minimum");
    }

    #[test]
    fn container_cpu_units_become_clamped_shares() {
        assert_eq!(container_cpu_shares(None), 2);
        assert_eq!(container_cpu_shares(Some(0)), 2);
        assert_eq!(container_cpu_shares(Some(1)), 2);
        assert_eq!(container_cpu_shares(Some(-5)), 2);
        assert_eq!(container_cpu_shares(Some(512)), 512);
        assert_eq!(container_cpu_shares(Some(1 << 20)), 262_144);
    }

    #[test]
    fn a_task_without_cpu_gets_the_sum_of_its_containers_shares() {
        assert_eq!(
            implicit_task_shares(&[Some(0), Some(1), Some(100)]),
            Some(104)
        );
        assert_eq!(implicit_task_shares(&[None, Some(512)]), Some(514));
        assert_eq!(implicit_task_shares(&[]), None);
        assert_eq!(implicit_task_shares(&[Some(1 << 20); 2]), Some(262_144));
    }

    #[test]
    fn task_limits_take_the_quota_or_else_the_shares() {
        let with_cpu = task_limits(Some(256), &[Some(512)], Some(512 << 20));
        assert_eq!(
            with_cpu,
            TaskLimits {
                cpu_quota: Some(CpuQuota {
                    quota_us: 25_000,
                    period_us: 100_000
                }),
                cpu_shares: None,
                memory: Some(512 << 20),
                pids: None,
            }
        );
        let implicit = task_limits(None, &[Some(512), None], None);
        assert_eq!((implicit.cpu_quota, implicit.cpu_shares), (None, Some(514)));
        assert_eq!(task_limits(None, &[], None), TaskLimits::default());
    }

    #[test]
    fn an_oom_kill_carries_the_agents_reason() {
        let oom = ExitStatus {
            code: 137,
            signal: None,
            oom_killed: true,
        };
        assert_eq!(
            exit_reason(&oom),
            Some("OutOfMemoryError: Container killed due to memory usage")
        );
        let killed = ExitStatus {
            code: 137,
            signal: Some(9),
            oom_killed: false,
        };
        assert_eq!(exit_reason(&killed), None);
    }
}
