//! Merges a container definition (with its overrides) and the image config into the
//! runtime's `ContainerSpec`, by Docker's rules, adding the environment ECS gives containers.

use crate::taskdef::model::{ContainerDefinition, KeyValuePair};
use runtime::{ContainerSpec, Limits, LogConfig, Rlimit, Security};
use std::path::PathBuf;

/// What the image config contributes (OCI `config` object).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecBuildError {
    #[error(
        "container {container}: no command specified (neither the task definition's \
         entryPoint/command nor the image's Entrypoint/Cmd)"
    )]
    NoCommand { container: String },
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

/// The variables Fargate puts in every container.
/// Ref: amazon-ecs-agent agent/api/container/container.go L68-71, agent/api/task/task.go.
pub fn ecs_env(region: &str, runtime_id: &str, launch_type: &str) -> Vec<String> {
    let exec_env = if launch_type == "EC2" {
        "AWS_ECS_EC2"
    } else {
        "AWS_ECS_FARGATE"
    };
    vec![
        format!("AWS_REGION={region}"),
        format!("AWS_DEFAULT_REGION={region}"),
        format!("AWS_EXECUTION_ENV={exec_env}"),
        format!("ECS_CONTAINER_METADATA_URI=http://169.254.170.2/v3/{runtime_id}"),
        format!("ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/{runtime_id}"),
        format!("ECS_AGENT_URI=http://169.254.170.2/api/{runtime_id}"),
    ]
}

/// Builds the runtime spec. Environment precedence (lowest first): image `Env`, the ECS
/// variables, the task definition's `environment`.
pub fn build(
    def: &ContainerDefinition,
    img: &ImageDefaults,
    ecs: Vec<String>,
    log: PathBuf,
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
    let caps = def
        .linux_parameters
        .as_ref()
        .and_then(|l| l.capabilities.clone());
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
            cpu_shares: Some(def.cpu.unwrap_or(0).max(0) as u64),
            memory: mib(def.memory),
            memory_reservation: mib(def.memory_reservation),
            pids: None,
        },
        security: Security {
            cap_add: caps
                .as_ref()
                .and_then(|c| c.add.clone())
                .unwrap_or_default(),
            cap_drop: caps.and_then(|c| c.drop).unwrap_or_default(),
            privileged: def.privileged.unwrap_or(false),
            read_only_rootfs: def.readonly_root_filesystem.unwrap_or(false),
            ..Default::default()
        },
        sysctls: def
            .system_controls
            .iter()
            .flatten()
            .filter_map(|s| Some((s.namespace.clone()?, s.value.clone()?)))
            .collect(),
        // The runtime clamps values above what this host allows, with a warning.
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
        log: LogConfig::JsonFile(log),
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
            ecs_env("us-east-1", "t-0", "FARGATE"),
            "/x".into(),
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
        let s = build(&d, &img(), vec![], "/x".into()).unwrap();
        assert_eq!(
            (s.cwd.as_deref(), s.user.as_deref()),
            (Some("/w"), Some("0"))
        );
        assert_eq!(s.limits.memory, Some(64 << 20));
        let d =
            def(r#"{"name":"a","ulimits":[{"name":"nofile","softLimit":1024,"hardLimit":4096}]}"#);
        let s = build(&d, &img(), vec![], "/x".into()).unwrap();
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
    fn no_command_is_an_error_naming_the_container() {
        let e = build(
            &def(r#"{"name":"web"}"#),
            &ImageDefaults::default(),
            vec![],
            "/x".into(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("container web: no command"));
    }
}
