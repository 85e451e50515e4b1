//! `/etc/ecs/ecs.config`, the file operators of ECS on EC2 configure the ECS agent with
//! (read by `minifargate agent`): parsed into typed settings, with what this host does not
//! apply named, so nothing in the file is ignored silently.
//!
//! Ref: docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-agent-config.html (each
//! variable's meaning, format and default); amazon-ecs-agent `agent/config/parse.go`
//! (JSON arrays and objects, Go durations) and `agent/api/ecsclient/client.go`
//! (`getResources`: registered MEMORY is MemTotal in MiB less `ECS_RESERVED_MEMORY`, PORTS
//! the reserved ports). The file's syntax is systemd's `EnvironmentFile=` (the
//! ECS-optimized AMI's ecs.service reads it so): `KEY=VALUE` lines, `#` and `;`
//! comments, blank lines, a value optionally in single or double quotes, a trailing `\`
//! continuing a line.

use crate::task::PullPolicy;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the ECS-optimized AMI keeps it.
pub const DEFAULT_PATH: &str = "/etc/ecs/ecs.config";

/// Why the file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EcsConfigError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not KEY=VALUE ({text:?}); fix or remove the line")]
    Syntax {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{path}:{line}: {key}={value:?}: {expected}")]
    Value {
        path: PathBuf,
        line: usize,
        key: String,
        value: String,
        expected: String,
    },
}

/// What the file sets (`None`: not set, or set to an empty value, which ECS reads as
/// its default), and what of it this host does not apply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EcsConfig {
    pub path: PathBuf,
    /// `ECS_CLUSTER`.
    pub cluster: Option<String>,
    /// `ECS_INSTANCE_ATTRIBUTES`: a JSON object of string values.
    pub instance_attributes: Option<BTreeMap<String, String>>,
    /// `ECS_RESERVED_MEMORY`, MiB left out of the registered MEMORY.
    pub reserved_memory: Option<u64>,
    /// `ECS_RESERVED_PORTS`: replaces the defaults (22, 2375, 2376, 51678, 51679).
    pub reserved_ports: Option<Vec<u16>>,
    /// `ECS_RESERVED_PORTS_UDP`: replaces the default (none).
    pub reserved_ports_udp: Option<Vec<u16>>,
    /// `ECS_IMAGE_PULL_BEHAVIOR`, as this host's pull policy.
    pub pull: Option<PullPolicy>,
    /// `ECS_CONTAINER_STOP_TIMEOUT`: a container's `stopTimeout` when it sets none.
    pub stop_timeout: Option<Duration>,
    /// `ECS_CONTAINER_START_TIMEOUT` (parsed; not applied, see [`EcsConfig::notes`]).
    pub start_timeout: Option<Duration>,
    /// `ECS_ENABLE_TASK_IAM_ROLE`.
    pub task_iam_role: Option<bool>,
    /// `ECS_LOGLEVEL`, as this product's log level (error, warn, info, debug).
    pub log_level: Option<&'static str>,
    /// `ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION`: how long a STOPPED task and its files stay.
    pub task_cleanup_wait: Option<Duration>,
    /// One line each for what the file sets and this host does not apply (or applies
    /// differently), with the reason: the agent says them at start.
    pub notes: Vec<String>,
}

/// What the agent applies to its registration and to the tasks it runs (from the file,
/// flags having won over it): the [`super::agent::Options`] member.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// MiB left out of the registered MEMORY (`ECS_RESERVED_MEMORY`).
    pub reserved_memory: i64,
    /// The registered PORTS (`None`: ECS's defaults).
    pub reserved_ports: Option<Vec<u16>>,
    /// The registered PORTS_UDP (`None`: none).
    pub reserved_ports_udp: Option<Vec<u16>>,
    /// How the tasks placed here get their images.
    pub pull: PullPolicy,
    /// A container's stop timeout when its definition sets no `stopTimeout`.
    pub stop_timeout: Option<Duration>,
}

impl Applied {
    /// The file's settings; defaults for what it does not set.
    pub fn from(c: Option<&EcsConfig>) -> Applied {
        let Some(c) = c else {
            return Applied::default();
        };
        Applied {
            reserved_memory: c
                .reserved_memory
                .map_or(0, |m| m.min(i64::MAX as u64) as i64),
            reserved_ports: c.reserved_ports.clone(),
            reserved_ports_udp: c.reserved_ports_udp.clone(),
            pull: c.pull.unwrap_or_default(),
            stop_timeout: c.stop_timeout,
        }
    }

    /// Registers what ECS's agent registers: MEMORY is the host's less the reserve, the
    /// reserved ports replace the defaults.
    pub fn apply(&self, reg: &mut super::instances::Registration) {
        reg.memory -= self.reserved_memory;
        reg.reserved_ports.clone_from(&self.reserved_ports);
        reg.reserved_ports_udp.clone_from(&self.reserved_ports_udp);
    }

    /// A task definition the box runs, with the file's container stop timeout where a
    /// container sets none (ECS: "if the stopTimeout parameter isn't specified, the value
    /// set for ECS_CONTAINER_STOP_TIMEOUT is used").
    pub fn fill(&self, d: &mut crate::taskdef::model::TaskDefinition) {
        if let Some(t) = self.stop_timeout {
            for c in d.container_definitions.iter_mut().flatten() {
                c.stop_timeout
                    .get_or_insert(t.as_secs().max(1).min(i64::MAX as u64) as i64);
            }
        }
    }
}

/// One `KEY=VALUE` of the file, with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub key: String,
    pub value: String,
}

impl EcsConfig {
    /// Reads `path`. `None` when `path` is absent and `required` is false (the default
    /// path on a box that has no such file).
    pub fn load(path: &Path, required: bool) -> Result<Option<EcsConfig>, EcsConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => EcsConfig::parse(path, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
            Err(source) => Err(EcsConfigError::Read {
                path: path.into(),
                source,
            }),
        }
    }

    /// Parses the text of the file at `path` (named in errors and notes).
    pub fn parse(path: &Path, text: &str) -> Result<EcsConfig, EcsConfigError> {
        let mut c = EcsConfig {
            path: path.into(),
            ..EcsConfig::default()
        };
        for e in entries(path, text)? {
            c.set(&e)?;
        }
        Ok(c)
    }

    fn set(&mut self, e: &Entry) -> Result<(), EcsConfigError> {
        let path = self.path.clone();
        let bad = |expected: &str| EcsConfigError::Value {
            path: path.clone(),
            line: e.line,
            key: e.key.clone(),
            value: e.value.clone(),
            expected: expected.into(),
        };
        let v = e.value.as_str();
        let at = format!("{}:{}", self.path.display(), e.line);
        // Ref: parse.go: a blank value is the default, not an error.
        if v.is_empty() {
            return Ok(());
        }
        match e.key.as_str() {
            "ECS_CLUSTER" => self.cluster = Some(v.into()),
            "ECS_INSTANCE_ATTRIBUTES" => {
                let map: BTreeMap<String, String> = serde_json::from_str(v).map_err(|_| {
                    bad("expected a JSON object of string values, like \
                         {\"stack\": \"prod\", \"zone\": \"a\"}")
                })?;
                if let Some(name) = map.keys().find(|n| !valid_attribute_name(n)) {
                    return Err(bad(&format!(
                        "attribute name {name:?}: up to 128 letters, numbers, hyphens, \
                         underscores, slashes or periods, not starting with `ecs.` (the \
                         built-in attributes)"
                    )));
                }
                if let Some((name, _)) = map.iter().find(|(_, v)| v.is_empty() || v.len() > 128) {
                    return Err(bad(&format!(
                        "attribute {name:?}: a value of 1 to 128 characters"
                    )));
                }
                self.instance_attributes = Some(map);
            }
            "ECS_RESERVED_MEMORY" => {
                self.reserved_memory = Some(
                    v.parse()
                        .map_err(|_| bad("expected a whole number of MiB, like 256"))?,
                )
            }
            "ECS_RESERVED_PORTS" | "ECS_RESERVED_PORTS_UDP" => {
                let ports: Vec<u16> = serde_json::from_str(v).map_err(|_| {
                    bad("expected a JSON array of port numbers (0-65535), like [22, 80]")
                })?;
                if e.key == "ECS_RESERVED_PORTS" {
                    self.reserved_ports = Some(ports);
                } else {
                    self.reserved_ports_udp = Some(ports);
                }
            }
            "ECS_IMAGE_PULL_BEHAVIOR" => {
                self.pull = Some(match v {
                    "default" => PullPolicy::Default,
                    "always" => PullPolicy::Always,
                    // Ref: ECS pulls `once` an image no earlier task on the instance
                    // pulled (or one its image cleanup removed): here the image cache
                    // keeps what it pulled until `prune`, so `once` is prefer-cached.
                    "once" => {
                        self.notes.push(format!(
                            "{at}: ECS_IMAGE_PULL_BEHAVIOR=once runs as prefer-cached: \
                             this host's image cache keeps what it pulled until `minifargate \
                             prune` (no image cleanup removes it behind a task)"
                        ));
                        PullPolicy::PreferCached
                    }
                    "prefer-cached" => PullPolicy::PreferCached,
                    _ => return Err(bad("expected default, always, once or prefer-cached")),
                })
            }
            "ECS_CONTAINER_STOP_TIMEOUT" => {
                let d = go_duration(v).ok_or_else(|| bad(DURATION))?;
                // Ref: parse.go parseDockerStopTimeout: below the 1 s minimum, 1 s.
                let min = Duration::from_secs(1);
                if d < min {
                    self.notes.push(format!(
                        "{at}: ECS_CONTAINER_STOP_TIMEOUT={v} is below ECS's minimum: 1s is used"
                    ));
                }
                self.stop_timeout = Some(d.max(min));
            }
            "ECS_CONTAINER_START_TIMEOUT" => {
                self.start_timeout = Some(go_duration(v).ok_or_else(|| bad(DURATION))?);
                self.notes.push(format!(
                    "{at}: ECS_CONTAINER_START_TIMEOUT is not applied here: it bounds the \
                     Docker daemon's container start, and this host starts a container \
                     itself, without a daemon call (a container's `startTimeout` still \
                     bounds its dependsOn wait)"
                ));
            }
            "ECS_ENABLE_TASK_IAM_ROLE" => {
                let on = go_bool(v).ok_or_else(|| bad("expected true or false"))?;
                self.task_iam_role = Some(on);
                if !on {
                    self.notes.push(format!(
                        "{at}: ECS_ENABLE_TASK_IAM_ROLE=false is not applied here: this host \
                         always serves a task's taskRoleArn credentials to that task's \
                         containers (docs/inside-a-task.md); a task without a role gets none"
                    ));
                }
            }
            "ECS_LOGLEVEL" => {
                self.log_level = Some(match v {
                    // Ref: the agent's levels (seelog); crit is its most severe.
                    "crit" | "error" => "error",
                    "warn" => "warn",
                    "info" => "info",
                    "debug" => "debug",
                    _ => return Err(bad("expected crit, error, warn, info or debug")),
                })
            }
            "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION" => {
                let d = go_duration(v).ok_or_else(|| bad(DURATION))?;
                // Ref: config.go minimumTaskCleanupWaitDuration.
                let min = Duration::from_secs(60);
                if d < min {
                    self.notes.push(format!(
                        "{at}: ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION={v} is below ECS's \
                         minimum: 1m is used"
                    ));
                }
                self.task_cleanup_wait = Some(d.max(min));
            }
            k if k.starts_with("ECS_") => self.notes.push(format!(
                "{at}: {k} is not applied here (this host has no setting of that name; \
                 docs/cluster.md lists the ECS_ keys it reads)"
            )),
            k => self.notes.push(format!(
                "{at}: {k} is not applied here: the file sets ECS_ keys for the agent; put \
                 other variables in the agent's own environment (its systemd unit)"
            )),
        }
        Ok(())
    }
}

const DURATION: &str =
    "expected a duration like 30s, 2m, 1h30m or 500ms (Go's format, as the ECS agent reads it)";

/// The ECS agent's custom attribute names (RegisterContainerInstance's rules, as
/// `agent --attribute` checks them).
pub fn valid_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_/\\.".contains(c))
        && !name.starts_with("ecs.")
}

/// The file's `KEY=VALUE` entries, as systemd's EnvironmentFile= reads them.
pub fn entries(path: &Path, text: &str) -> Result<Vec<Entry>, EcsConfigError> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, raw)) = lines.next() {
        let line = i + 1;
        let mut logical = raw.to_string();
        // A trailing backslash continues the line (systemd).
        while logical.ends_with('\\') {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next),
                None => break,
            }
        }
        let t = logical.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        let syntax = || EcsConfigError::Syntax {
            path: path.into(),
            line,
            text: t.to_string(),
        };
        let (key, value) = t.split_once('=').ok_or_else(syntax)?;
        let key = key.trim();
        if key.is_empty()
            || key.starts_with(|c: char| c.is_ascii_digit())
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(syntax());
        }
        out.push(Entry {
            line,
            key: key.into(),
            value: unquote(value.trim()).ok_or_else(syntax)?,
        });
    }
    Ok(out)
}

/// A value in single quotes (literal) or double quotes (`\"` and `\\` escaped), or bare.
/// `None`: a quote opened and not closed.
fn unquote(v: &str) -> Option<String> {
    let Some(q @ ('"' | '\'')) = v.chars().next() else {
        return Some(v.into());
    };
    if v.len() < 2 || !v.ends_with(q) {
        return None;
    }
    let inner = &v[1..v.len() - 1];
    if q == '\'' {
        return Some(inner.into());
    }
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().unwrap_or('\\')),
            c => out.push(c),
        }
    }
    Some(out)
}

/// A Go duration (`time.ParseDuration`): numbers with units ns, us, µs, ms, s, m, h,
/// concatenated (`1h30m`, `1.5s`); `0` alone. Negative values are refused.
pub fn go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let number: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .into_iter()
            .filter(|u| rest.starts_with(u))
            .max_by_key(|u| u.len())?;
        rest = &rest[unit.len()..];
        total += number
            * match unit {
                "ns" => 1e-9,
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                _ => 3600.0,
            };
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Go's `strconv.ParseBool`, which the agent reads booleans with.
fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EcsConfig, EcsConfigError> {
        EcsConfig::parse(Path::new("/etc/ecs/ecs.config"), text)
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            r#"# written by user data
ECS_CLUSTER=prod
ECS_INSTANCE_ATTRIBUTES={"stack": "blue", "zone": "a"}
ECS_RESERVED_MEMORY=256
ECS_RESERVED_PORTS=[22, 8080]
ECS_RESERVED_PORTS_UDP=[53]
ECS_IMAGE_PULL_BEHAVIOR=prefer-cached
ECS_CONTAINER_STOP_TIMEOUT=2m
ECS_CONTAINER_START_TIMEOUT=3m
ECS_ENABLE_TASK_IAM_ROLE=true
ECS_LOGLEVEL=debug
ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION=1h30m
"#,
        )
        .unwrap();
        assert_eq!(c.cluster.as_deref(), Some("prod"));
        let attrs = c.instance_attributes.as_ref().unwrap();
        assert_eq!(attrs["stack"], "blue");
        assert_eq!(attrs["zone"], "a");
        assert_eq!(c.reserved_memory, Some(256));
        assert_eq!(c.reserved_ports, Some(vec![22, 8080]));
        assert_eq!(c.reserved_ports_udp, Some(vec![53]));
        assert_eq!(c.pull, Some(PullPolicy::PreferCached));
        assert_eq!(c.stop_timeout, Some(Duration::from_secs(120)));
        assert_eq!(c.start_timeout, Some(Duration::from_secs(180)));
        assert_eq!(c.task_iam_role, Some(true));
        assert_eq!(c.log_level, Some("debug"));
        assert_eq!(c.task_cleanup_wait, Some(Duration::from_secs(5400)));
        // Only the start timeout is not applied.
        assert_eq!(c.notes.len(), 1, "{:?}", c.notes);
        assert!(
            c.notes[0].starts_with("/etc/ecs/ecs.config:9: ECS_CONTAINER_START_TIMEOUT"),
            "{:?}",
            c.notes
        );
    }

    #[test]
    fn pull_behaviors_map_to_pull_policies() {
        for (v, want) in [
            ("default", PullPolicy::Default),
            ("always", PullPolicy::Always),
            ("once", PullPolicy::PreferCached),
            ("prefer-cached", PullPolicy::PreferCached),
        ] {
            let c = parse(&format!("ECS_IMAGE_PULL_BEHAVIOR={v}")).unwrap();
            assert_eq!(c.pull, Some(want), "{v}");
            assert_eq!(
                c.notes.len(),
                usize::from(v == "once"),
                "{v}: {:?}",
                c.notes
            );
        }
    }

    #[test]
    fn log_levels_map_to_this_hosts() {
        for (v, want) in [
            ("crit", "error"),
            ("error", "error"),
            ("warn", "warn"),
            ("info", "info"),
            ("debug", "debug"),
        ] {
            assert_eq!(
                parse(&format!("ECS_LOGLEVEL={v}")).unwrap().log_level,
                Some(want)
            );
        }
    }

    #[test]
    fn comments_blank_lines_quotes_and_continuations() {
        let c = parse(
            "\n  # a comment\n; another\n\n  ECS_CLUSTER = \"my cluster\"  \n\
             ECS_LOGLEVEL='warn'\nECS_RESERVED_PORTS=[22,\\\n 2375]\n\
             ECS_INSTANCE_ATTRIBUTES=\"{\\\"a\\\": \\\"b\\\"}\"\n",
        )
        .unwrap();
        assert_eq!(c.cluster.as_deref(), Some("my cluster"));
        assert_eq!(c.log_level, Some("warn"));
        assert_eq!(c.reserved_ports, Some(vec![22, 2375]));
        assert_eq!(c.instance_attributes.unwrap()["a"], "b");
        assert!(c.notes.is_empty(), "{:?}", c.notes);
    }

    #[test]
    fn an_empty_value_is_the_default() {
        let c = parse("ECS_RESERVED_MEMORY=\nECS_CLUSTER=\"\"\n").unwrap();
        assert_eq!(
            c,
            EcsConfig {
                path: "/etc/ecs/ecs.config".into(),
                ..EcsConfig::default()
            }
        );
    }

    #[test]
    fn an_empty_port_list_replaces_the_defaults() {
        let c = parse("ECS_RESERVED_PORTS=[]").unwrap();
        assert_eq!(c.reserved_ports, Some(vec![]));
    }

    #[test]
    fn malformed_values_name_the_key_and_the_line() {
        for (text, want) in [
            (
                "ECS_CLUSTER=a\nECS_RESERVED_MEMORY=256MiB",
                "/etc/ecs/ecs.config:2: ECS_RESERVED_MEMORY=\"256MiB\": expected a whole number",
            ),
            ("ECS_RESERVED_MEMORY=-1", "ECS_RESERVED_MEMORY=\"-1\""),
            (
                "ECS_RESERVED_PORTS=22,80",
                ":1: ECS_RESERVED_PORTS=\"22,80\": expected a JSON array",
            ),
            (
                "ECS_RESERVED_PORTS_UDP=[70000]",
                "ECS_RESERVED_PORTS_UDP=\"[70000]\"",
            ),
            (
                "ECS_INSTANCE_ATTRIBUTES=stack=blue",
                "ECS_INSTANCE_ATTRIBUTES=\"stack=blue\": expected a JSON object",
            ),
            (
                "ECS_INSTANCE_ATTRIBUTES={\"n\": 1}",
                "expected a JSON object of string values",
            ),
            (
                "ECS_INSTANCE_ATTRIBUTES={\"ecs.os-type\": \"x\"}",
                "attribute name \"ecs.os-type\"",
            ),
            (
                "ECS_IMAGE_PULL_BEHAVIOR=never",
                "expected default, always, once or prefer-cached",
            ),
            (
                "ECS_CONTAINER_STOP_TIMEOUT=30",
                "expected a duration like 30s",
            ),
            ("ECS_CONTAINER_START_TIMEOUT=-3m", "expected a duration"),
            (
                "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION=3 hours",
                "expected a duration",
            ),
            ("ECS_ENABLE_TASK_IAM_ROLE=yes", "expected true or false"),
            (
                "ECS_LOGLEVEL=trace",
                "expected crit, error, warn, info or debug",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn lines_that_are_not_key_value_are_refused_with_their_number() {
        for (text, line) in [
            ("ECS_CLUSTER=a\njust words", 2),
            ("=value", 1),
            ("ECS CLUSTER=a", 1),
            ("1ECS=a", 1),
            ("\n\nECS_CLUSTER=\"open", 3),
        ] {
            let e = err(text);
            assert!(
                e.starts_with(&format!("/etc/ecs/ecs.config:{line}: not KEY=VALUE")),
                "{e}"
            );
        }
    }

    #[test]
    fn keys_not_applied_here_are_named_with_the_reason() {
        let c = parse(
            "ECS_ENABLE_CONTAINER_METADATA=true\nHTTP_PROXY=http://proxy:3128\n\
             ECS_ENABLE_TASK_IAM_ROLE=false\nECS_CONTAINER_STOP_TIMEOUT=500ms\n\
             ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION=10s\n",
        )
        .unwrap();
        assert_eq!(c.notes.len(), 5, "{:?}", c.notes);
        assert!(c.notes[0].contains(":1: ECS_ENABLE_CONTAINER_METADATA is not applied here"));
        assert!(c.notes[1].contains(":2: HTTP_PROXY is not applied here"));
        assert!(c.notes[2].contains(":3: ECS_ENABLE_TASK_IAM_ROLE=false is not applied"));
        assert!(c.notes[3].contains("1s is used"));
        assert_eq!(c.stop_timeout, Some(Duration::from_secs(1)));
        assert!(c.notes[4].contains("1m is used"));
        assert_eq!(c.task_cleanup_wait, Some(Duration::from_secs(60)));
    }

    #[test]
    fn applied_to_the_registration_and_the_tasks() {
        let c = parse(
            "ECS_RESERVED_MEMORY=256\nECS_RESERVED_PORTS=[22]\nECS_RESERVED_PORTS_UDP=[53]\n\
             ECS_IMAGE_PULL_BEHAVIOR=always\nECS_CONTAINER_STOP_TIMEOUT=2m\n",
        )
        .unwrap();
        let a = Applied::from(Some(&c));
        assert_eq!(a.pull, PullPolicy::Always);
        let mut reg = super::super::instances::Registration::of_this_box(&"0".repeat(32), 0);
        let total = reg.memory;
        a.apply(&mut reg);
        assert_eq!(reg.memory, total - 256);
        assert_eq!(
            (reg.reserved_tcp(), reg.reserved_udp()),
            (vec![22], vec![53])
        );
        // Without the file: ECS's defaults.
        let mut plain = super::super::instances::Registration::of_this_box(&"0".repeat(32), 0);
        Applied::from(None).apply(&mut plain);
        assert_eq!(plain.memory, total);
        assert_eq!(plain.reserved_tcp(), [22, 2375, 2376, 51678, 51679]);
        assert!(plain.reserved_udp().is_empty());
        // The stop timeout fills only the containers that set none.
        let mut d: crate::taskdef::model::TaskDefinition = serde_json::from_str(
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i"},
                {"name":"b","image":"i","stopTimeout":5}]}"#,
        )
        .unwrap();
        a.fill(&mut d);
        let t: Vec<_> = d
            .container_definitions
            .unwrap()
            .iter()
            .map(|c| c.stop_timeout)
            .collect();
        assert_eq!(t, [Some(120), Some(5)]);
    }

    #[test]
    fn go_durations() {
        for (s, ms) in [
            ("0", 0),
            ("30s", 30_000),
            ("1h30m", 5_400_000),
            ("1.5s", 1_500),
            ("500ms", 500),
            ("2m3s", 123_000),
            ("1000us", 1),
        ] {
            assert_eq!(go_duration(s), Some(Duration::from_millis(ms)), "{s}");
        }
        for s in ["", "30", "s", "1d", "-1s", "1h 30m", "1.2.3s"] {
            assert_eq!(go_duration(s), None, "{s}");
        }
    }

    #[test]
    fn a_missing_file_is_nothing_unless_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ecs.config");
        assert_eq!(EcsConfig::load(&p, false).unwrap(), None);
        let e = EcsConfig::load(&p, true).unwrap_err();
        assert!(e.to_string().starts_with("failed to read "), "{e}");
        std::fs::write(&p, "ECS_CLUSTER=x\n").unwrap();
        let c = EcsConfig::load(&p, false).unwrap().unwrap();
        assert_eq!(c.cluster.as_deref(), Some("x"));
    }
}
