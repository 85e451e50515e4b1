//! Merges a container definition (with its overrides) and the image config into the
//! runtime's `ContainerSpec`, by Docker's rules, adding the environment ECS gives containers.

use crate::taskdef::model::{ContainerDefinition, DeviceCgroupPermission, KeyValuePair};
use crate::taskdef::security_options;
use runtime::{ContainerSpec, Device, Limits, LogConfig, Mount, Rlimit, Security};
use std::path::{Path, PathBuf};

/// What the image config contributes (OCI `config` object).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// The image config's `Volumes` (mount paths), for filling new volumes.
    pub volumes: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecBuildError {
    #[error(
        "container {container}: no command specified (neither the task definition's \
         entryPoint/command nor the image's Entrypoint/Cmd)"
    )]
    NoCommand { container: String },
    #[error(
        "containerDefinitions[{idx}].systemControls[{k}].namespace: {name:?} is not a namespaced \
         sysctl; only the IPC ones (kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*) and net.* \
         can be set for a container"
    )]
    Sysctl { idx: usize, k: usize, name: String },
    #[error("container {container}: dockerSecurityOptions: {docker}")]
    SecurityOpt { container: String, docker: String },
}

use crate::taskdef::validate::is_namespaced_sysctl;

/// Refuses `systemControls` that are not namespaced (they would change the host).
pub fn check_sysctls(idx: usize, def: &ContainerDefinition) -> Result<(), SpecBuildError> {
    for (k, s) in def.system_controls.iter().flatten().enumerate() {
        let name = s.namespace.as_deref().unwrap_or("");
        if !is_namespaced_sysctl(name) {
            return Err(SpecBuildError::Sysctl {
                idx,
                k,
                name: name.to_string(),
            });
        }
    }
    Ok(())
}

/// Warnings for settings this host applies differently: ulimits above the hard limit it
/// allows (clamped by the runtime), maxSwap without a memory limit to add it to.
pub fn host_warnings(
    idx: usize,
    def: &ContainerDefinition,
    host_max: &dyn Fn(&str) -> Option<u64>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, u) in def.ulimits.iter().flatten().enumerate() {
        let (Some(name), Some(hard)) = (u.name, u.hard_limit) else {
            continue;
        };
        if let Some(max) = host_max(name.as_str())
            && (hard.max(0) as u64) > max
        {
            out.push(format!(
                "containerDefinitions[{idx}].ulimits[{k}]: {} hardLimit {hard} is above what this \
                 host allows ({max}, no CAP_SYS_RESOURCE); clamped to {max}",
                name.as_str()
            ));
        }
    }
    if let Some(lp) = &def.linux_parameters
        && lp.max_swap.is_some_and(|s| s > 0)
        && def.memory.is_none()
    {
        out.push(format!(
            "containerDefinitions[{idx}].linuxParameters.maxSwap: not applied without a \
             container `memory` limit (swap is limited together with memory)"
        ));
    }
    out
}

/// A static init binary for `initProcessEnabled`: this binary when it is statically linked
/// (it serves as the init, see `runtime::init`), else Debian's `tini-static`.
pub fn static_init() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    if is_static_elf(&exe) {
        return Some(exe);
    }
    ["/usr/bin/tini-static", "/usr/libexec/docker/docker-init"]
        .iter()
        .map(PathBuf::from)
        .find(|p| is_static_elf(p))
}

/// A 64-bit little-endian ELF without a `PT_INTERP` program header.
fn is_static_elf(path: &Path) -> bool {
    let Ok(b) = std::fs::read(path) else {
        return false;
    };
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap_or_default()) as usize;
    let (size, num) = (u16_at(0x36), u16_at(0x38));
    (0..num).all(|i| {
        let o = phoff + i * size;
        // PT_INTERP = 3.
        b.get(o..o + 4)
            .is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != 3)
    })
}

/// The process arguments by Docker's rules: `entryPoint` replaces the image Entrypoint and
/// then drops the image Cmd; `command` replaces the Cmd.
/// Ref: Docker `daemon/create.go` (an Entrypoint set on create resets Cmd from the image).
pub fn args(def: &ContainerDefinition, img: &ImageDefaults) -> Vec<String> {
    let (entry, default_cmd) = match &def.entry_point {
        Some(ep) => (ep.clone(), Vec::new()),
        None => (img.entrypoint.clone(), img.cmd.clone()),
    };
    let cmd = def.command.clone().unwrap_or(default_cmd);
    entry.into_iter().chain(cmd).collect()
}

/// `KEY=value` lists merged left to right; a later key replaces an earlier one in place.
pub fn merge_env(layers: &[Vec<String>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for layer in layers {
        for kv in layer {
            let key = kv.split('=').next().unwrap_or("");
            match out
                .iter_mut()
                .find(|e| e.split('=').next().unwrap_or("") == key)
            {
                Some(slot) => *slot = kv.clone(),
                None => out.push(kv.clone()),
            }
        }
    }
    out
}

pub fn pairs_to_env(pairs: &[KeyValuePair]) -> Vec<String> {
    pairs
        .iter()
        .filter_map(|p| {
            let name = p.name.as_deref()?;
            Some(format!("{name}={}", p.value.as_deref().unwrap_or("")))
        })
        .collect()
}

/// Where containers reach the task metadata endpoint, in the task's own namespace.
pub const ENDPOINT_BASE: &str = "http://169.254.170.2";

/// The variables Fargate puts in every container; `base` is where the endpoint is
/// ([`ENDPOINT_BASE`], or a host-mode task's loopback URL).
/// Ref: amazon-ecs-agent agent/api/container/container.go L68-71, agent/api/task/task.go.
pub fn ecs_env(region: &str, runtime_id: &str, launch_type: &str, base: &str) -> Vec<String> {
    let exec_env = if launch_type == "EC2" {
        "AWS_ECS_EC2"
    } else {
        "AWS_ECS_FARGATE"
    };
    vec![
        format!("AWS_REGION={region}"),
        format!("AWS_DEFAULT_REGION={region}"),
        format!("AWS_EXECUTION_ENV={exec_env}"),
        format!("ECS_CONTAINER_METADATA_URI={base}/v3/{runtime_id}"),
        format!("ECS_CONTAINER_METADATA_URI_V4={base}/v4/{runtime_id}"),
        format!("ECS_AGENT_URI={base}/api/{runtime_id}"),
    ]
}

/// Builds the runtime spec. Environment precedence (lowest first): image `Env`, the ECS
/// variables, the task definition's `environment`.
pub fn build(
    def: &ContainerDefinition,
    img: &ImageDefaults,
    ecs: Vec<String>,
    log: LogConfig,
    init: Option<PathBuf>,
) -> Result<ContainerSpec, SpecBuildError> {
    let name = def.name_str().to_string();
    let args = args(def, img);
    if args.is_empty() {
        return Err(SpecBuildError::NoCommand { container: name });
    }
    let env = merge_env(&[
        img.env.clone(),
        ecs,
        pairs_to_env(def.environment.as_deref().unwrap_or_default()),
    ]);
    let mib = |v: Option<i64>| v.filter(|m| *m > 0).map(|m| (m as u64) << 20);
    let lp = def.linux_parameters.clone().unwrap_or_default();
    let caps = lp.capabilities.clone();
    let sec_opts = security_options::parse_all(def.docker_security_options.as_deref());
    if let Some(docker) = sec_opts.iter().find_map(|o| match o {
        security_options::SecurityOption::Invalid(d) => Some(d.clone()),
        _ => None,
    }) {
        // As Docker at container create (moby daemon/daemon_unix.go parseSecurityOpt).
        return Err(SpecBuildError::SecurityOpt {
            container: name,
            docker,
        });
    }
    Ok(ContainerSpec {
        args,
        env,
        cwd: def
            .working_directory
            .clone()
            .or_else(|| img.working_dir.clone())
            .filter(|w| !w.is_empty()),
        user: def
            .user
            .clone()
            .or_else(|| img.user.clone())
            .filter(|u| !u.is_empty()),
        hostname: def.hostname.clone(),
        limits: Limits {
            // As the ECS agent: a container without `cpu` gets the minimum shares.
            cpu_shares: Some(
                crate::supervisor::isolation::resources::container_cpu_shares(def.cpu),
            ),
            memory: mib(def.memory),
            memory_reservation: mib(def.memory_reservation),
            pids: None,
            // maxSwap is MiB; ECS's default swappiness with maxSwap is 60.
            swap: lp
                .max_swap
                .and_then(|s| u64::try_from(s).ok())
                .map(|s| s << 20),
            swappiness: lp
                .swappiness
                .and_then(|s| u64::try_from(s).ok())
                .or(lp.max_swap.map(|_| 60)),
        },
        security: Security {
            cap_add: caps
                .as_ref()
                .and_then(|c| c.add.clone())
                .unwrap_or_default(),
            cap_drop: caps.and_then(|c| c.drop).unwrap_or_default(),
            privileged: def.privileged.unwrap_or(false),
            read_only_rootfs: def.readonly_root_filesystem.unwrap_or(false),
            // Ref: Docker's `--security-opt no-new-privileges[=BOOL]` and `apparmor=PROFILE`,
            // which ECS passes through from dockerSecurityOptions (EC2 only; Fargate refuses
            // the field). The AppArmor profile was checked against the host at launch.
            no_new_privileges: security_options::no_new_privileges(&sec_opts),
            apparmor_profile: security_options::apparmor_profile(&sec_opts).map(str::to_string),
            ..Default::default()
        },
        sysctls: def
            .system_controls
            .iter()
            .flatten()
            .filter_map(|s| Some((s.namespace.clone()?, s.value.clone()?)))
            .collect(),
        // The runtime clamps values above what this host allows, with a warning. Without
        // a `nofile` ulimit the runtime's DEFAULT_NOFILE (65535/65535) applies: the ECS
        // default on Fargate and the ECS-optimized AMIs.
        rlimits: def
            .ulimits
            .iter()
            .flatten()
            .filter_map(|u| {
                Some(Rlimit {
                    name: u.name?.as_str().to_string(),
                    soft: u.soft_limit?.max(0) as u64,
                    hard: u.hard_limit?.max(0) as u64,
                })
            })
            .collect(),
        devices: lp
            .devices
            .iter()
            .flatten()
            .filter_map(|d| {
                Some(Device {
                    host_path: PathBuf::from(d.host_path.as_ref()?),
                    container_path: d.container_path.clone(),
                    permissions: d.permissions.as_ref().map(|p| {
                        p.iter()
                            .map(|x| match x {
                                DeviceCgroupPermission::Read => 'r',
                                DeviceCgroupPermission::Write => 'w',
                                DeviceCgroupPermission::Mknod => 'm',
                            })
                            .collect()
                    }),
                })
            })
            .collect(),
        // sharedMemorySize and tmpfs size are MiB.
        shm_size: mib(lp.shared_memory_size),
        mounts: lp
            .tmpfs
            .iter()
            .flatten()
            .filter_map(|t| {
                Some(Mount::Tmpfs {
                    destination: t.container_path.clone()?,
                    size: mib(t.size),
                    options: t.mount_options.clone().unwrap_or_default(),
                })
            })
            .collect(),
        init: if lp.init_process_enabled == Some(true) {
            init
        } else {
            None
        },
        tty: def.pseudo_terminal.unwrap_or(false),
        interactive: def.interactive.unwrap_or(false),
        log,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> ImageDefaults {
        ImageDefaults {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into()],
            env: vec!["PATH=/bin".into(), "A=image".into()],
            working_dir: Some("/app".into()),
            user: Some("nobody".into()),
            volumes: vec![],
        }
    }

    fn def(json: &str) -> ContainerDefinition {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn docker_rules_for_entrypoint_and_command() {
        assert_eq!(args(&def(r#"{"name":"a"}"#), &img()), ["/entry", "serve"]);
        assert_eq!(
            args(&def(r#"{"name":"a","command":["x"]}"#), &img()),
            ["/entry", "x"]
        );
        // A new entryPoint drops the image's Cmd.
        assert_eq!(
            args(&def(r#"{"name":"a","entryPoint":["sh","-c"]}"#), &img()),
            ["sh", "-c"]
        );
        assert_eq!(
            args(
                &def(r#"{"name":"a","entryPoint":["sh","-c"],"command":["echo hi"]}"#),
                &img()
            ),
            ["sh", "-c", "echo hi"]
        );
    }

    #[test]
    fn env_precedence_and_defaults_from_the_image() {
        let d = def(
            r#"{"name":"a","environment":[{"name":"A","value":"task"},{"name":"AWS_REGION","value":"eu-west-1"}]}"#,
        );
        let s = build(
            &d,
            &img(),
            ecs_env("us-east-1", "t-0", "FARGATE", ENDPOINT_BASE),
            LogConfig::json_file("/x"),
            None,
        )
        .unwrap();
        assert!(s.env.contains(&"A=task".to_string()));
        assert!(s.env.contains(&"PATH=/bin".to_string()));
        assert!(s.env.contains(&"AWS_REGION=eu-west-1".to_string()));
        assert!(
            s.env
                .contains(&"ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/t-0".to_string())
        );
        assert_eq!(s.cwd.as_deref(), Some("/app"));
        assert_eq!(s.user.as_deref(), Some("nobody"));
        let d = def(r#"{"name":"a","workingDirectory":"/w","user":"0","memory":64}"#);
        let s = build(&d, &img(), vec![], LogConfig::json_file("/x"), None).unwrap();
        assert_eq!(
            (s.cwd.as_deref(), s.user.as_deref()),
            (Some("/w"), Some("0"))
        );
        assert_eq!(s.limits.memory, Some(64 << 20));
        let d =
            def(r#"{"name":"a","ulimits":[{"name":"nofile","softLimit":1024,"hardLimit":4096}]}"#);
        let s = build(&d, &img(), vec![], LogConfig::json_file("/x"), None).unwrap();
        assert_eq!(
            s.rlimits,
            [Rlimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 4096
            }]
        );
    }

    #[test]
    fn linux_parameters_become_runtime_settings() {
        let d = def(
            r#"{"name":"a","pseudoTerminal":true,"interactive":true,"linuxParameters":{
                "capabilities":{"add":["SYS_PTRACE"],"drop":["NET_RAW"]},
                "devices":[{"hostPath":"/dev/fuse","permissions":["read","write"]}],
                "initProcessEnabled":true,"sharedMemorySize":128,
                "tmpfs":[{"containerPath":"/scratch","size":16,"mountOptions":["noexec","mode=1777"]}]}}"#,
        );
        let s = build(
            &d,
            &img(),
            vec![],
            LogConfig::json_file("/x"),
            Some("/init".into()),
        )
        .unwrap();
        assert_eq!(s.security.cap_add, ["SYS_PTRACE"]);
        assert_eq!(s.security.cap_drop, ["NET_RAW"]);
        assert_eq!(s.devices[0].host_path, PathBuf::from("/dev/fuse"));
        assert_eq!(s.devices[0].permissions.as_deref(), Some("rw"));
        assert_eq!(s.shm_size, Some(128 << 20));
        assert_eq!(
            s.mounts,
            [Mount::Tmpfs {
                destination: "/scratch".into(),
                size: Some(16 << 20),
                options: vec!["noexec".into(), "mode=1777".into()],
            }]
        );
        assert_eq!(s.init, Some(PathBuf::from("/init")));
        assert!(s.tty && s.interactive);
        // Without initProcessEnabled the init is not used.
        let s = build(
            &def(r#"{"name":"a"}"#),
            &img(),
            vec![],
            LogConfig::json_file("/x"),
            Some("/init".into()),
        )
        .unwrap();
        assert_eq!(s.init, None);
        let d = def(r#"{"name":"a","memory":64,"linuxParameters":{"maxSwap":32}}"#);
        let s = build(&d, &img(), vec![], LogConfig::json_file("/x"), None).unwrap();
        assert_eq!(
            (s.limits.swap, s.limits.swappiness),
            (Some(32 << 20), Some(60))
        );
    }

    #[test]
    fn sysctls_must_be_namespaced_and_host_limits_warn() {
        let d = def(
            r#"{"name":"a","systemControls":[{"namespace":"net.ipv4.ip_forward","value":"1"},
                {"namespace":"kernel.shmmax","value":"1"},{"namespace":"vm.swappiness","value":"1"}]}"#,
        );
        let e = check_sysctls(2, &d).unwrap_err().to_string();
        assert!(
            e.starts_with("containerDefinitions[2].systemControls[2].namespace: \"vm.swappiness\""),
            "{e}"
        );
        let d = def(
            r#"{"name":"a","ulimits":[{"name":"nofile","softLimit":100,"hardLimit":90000},
                {"name":"core","softLimit":0,"hardLimit":0}],"linuxParameters":{"maxSwap":10}}"#,
        );
        let w = host_warnings(0, &d, &|n| (n == "nofile").then_some(20000));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("ulimits[0]: nofile hardLimit 90000")
                && w[0].contains("clamped to 20000")
        );
        assert!(w[1].contains("linuxParameters.maxSwap"));
    }

    #[test]
    fn static_elf_detection() {
        // Debian's busybox-static (the test images' busybox) is static; this test binary is not.
        if Path::new("/bin/busybox").exists() {
            assert!(is_static_elf(Path::new("/bin/busybox")));
        }
        assert!(!is_static_elf(&std::env::current_exe().unwrap()));
        assert!(!is_static_elf(Path::new("/etc/hostname")));
    }

    #[test]
    fn no_command_is_an_error_naming_the_container() {
        let e = build(
            &def(r#"{"name":"web"}"#),
            &ImageDefaults::default(),
            vec![],
            LogConfig::json_file("/x"),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("container web: no command"));
    }
}
