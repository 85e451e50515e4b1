//! `dockerSecurityOptions`, parsed the way Docker parses `--security-opt` (ECS hands the
//! strings to Docker's `HostConfig.SecurityOpt`), and what each one becomes on this host.
//!
//! Ref: ecs.json `ContainerDefinition.dockerSecurityOptions` (valid values
//! "no-new-privileges" | "apparmor:PROFILE" | "label:value" |
//! "credentialspec:CredentialSpecFilePath"); moby daemon/daemon_unix.go `parseSecurityOpt`
//! (`=` or the older `:` separator; anything else fails container create with
//! `invalid --security-opt 1|2: "…"`, see moby daemon/daemon_unix_test.go).

/// One `dockerSecurityOptions` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityOption {
    /// `no-new-privileges`, `no-new-privileges=BOOL` (or `:BOOL`).
    NoNewPrivileges(bool),
    /// `apparmor:PROFILE`.
    AppArmor(String),
    /// `label:disable`, `label:type:…`, `label:user:…`, … (SELinux).
    Label(String),
    /// `seccomp:…`: Docker knows it; ECS does not list it and does not pass it on.
    Seccomp(String),
    /// `credentialspec:…` (gMSA, Active Directory), handled by the ECS agent itself.
    CredentialSpec(String),
    /// What Docker refuses when it creates the container; the text is Docker's error.
    Invalid(String),
}

/// Go's `strconv.ParseBool`, which Docker applies to `no-new-privileges=VALUE`.
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

impl SecurityOption {
    /// Parses one entry as Docker does (moby `parseSecurityOpt`), plus ECS's
    /// `credentialspec:` that the agent takes out before Docker sees it.
    pub fn parse(opt: &str) -> SecurityOption {
        if opt == "no-new-privileges" {
            return SecurityOption::NoNewPrivileges(true);
        }
        if opt == "disable" {
            return SecurityOption::Label("disable".into());
        }
        let cut = if opt.contains('=') {
            opt.split_once('=')
        } else {
            opt.split_once(':')
        };
        let Some((k, v)) = cut else {
            return SecurityOption::Invalid(format!("invalid --security-opt 1: {opt:?}"));
        };
        match k {
            "label" => SecurityOption::Label(v.into()),
            "apparmor" => SecurityOption::AppArmor(v.into()),
            "seccomp" => SecurityOption::Seccomp(v.into()),
            "credentialspec" => SecurityOption::CredentialSpec(v.into()),
            "no-new-privileges" => match go_bool(v) {
                Some(b) => SecurityOption::NoNewPrivileges(b),
                None => SecurityOption::Invalid(format!("invalid --security-opt 2: {opt:?}")),
            },
            _ => SecurityOption::Invalid(format!("invalid --security-opt 2: {opt:?}")),
        }
    }

    /// Why this option is not applied here, if it is not: the coverage table's `not-applied`
    /// warning for label/seccomp/credentialspec, `validate`'s `docker-security-options` for
    /// what Docker refuses. AppArmor is host-dependent and checked when the task starts.
    pub fn not_applied(&self) -> Option<String> {
        match self {
            SecurityOption::NoNewPrivileges(_) | SecurityOption::AppArmor(_) => None,
            SecurityOption::Label(v) if v == "disable" => None,
            SecurityOption::Label(v) => Some(format!(
                "label:{v}: this host does not label containers for \
                 SELinux (on ECS it needs an instance registered with ECS_SELINUX_CAPABLE=true \
                 and SELinux enabled; Docker ignores it on hosts without SELinux)"
            )),
            SecurityOption::Seccomp(v) => Some(format!(
                "seccomp:{v}: not applied, here as on ECS: it is not among ECS's \
                 dockerSecurityOptions values and ECS does not pass it to Docker \
                 (aws/amazon-ecs-agent#896, aws/containers-roadmap#356); the default seccomp \
                 profile stays"
            )),
            SecurityOption::CredentialSpec(v) => Some(format!(
                "credentialspec:{v}: gMSA credential specs need Active \
                 Directory and the ECS agent's credentials-fetcher"
            )),
            SecurityOption::Invalid(docker) => Some(format!(
                "Docker refuses this option when it creates the container ({docker}); the \
                 container fails to start, on ECS (EC2) and here. Valid values: \
                 no-new-privileges, apparmor:PROFILE, label:VALUE, credentialspec:PATH"
            )),
        }
    }
}

/// The parsed options of a container, in order.
pub fn parse_all(opts: Option<&[String]>) -> Vec<SecurityOption> {
    opts.unwrap_or_default()
        .iter()
        .map(|o| SecurityOption::parse(o))
        .collect()
}

/// Whether the options ask for no_new_privs (the last `no-new-privileges` wins, as in Docker).
pub fn no_new_privileges(opts: &[SecurityOption]) -> bool {
    opts.iter()
        .rev()
        .find_map(|o| match o {
            SecurityOption::NoNewPrivileges(b) => Some(*b),
            _ => None,
        })
        .unwrap_or(false)
}

/// The AppArmor profile asked for (the last one wins, as in Docker).
pub fn apparmor_profile(opts: &[SecurityOption]) -> Option<&str> {
    opts.iter().rev().find_map(|o| match o {
        SecurityOption::AppArmor(p) => Some(p.as_str()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use SecurityOption as S;

    #[test]
    fn parsed_as_docker_parses_security_opt() {
        assert_eq!(S::parse("no-new-privileges"), S::NoNewPrivileges(true));
        assert_eq!(S::parse("no-new-privileges:true"), S::NoNewPrivileges(true));
        assert_eq!(
            S::parse("no-new-privileges=false"),
            S::NoNewPrivileges(false)
        );
        assert_eq!(
            S::parse("apparmor:docker-default"),
            S::AppArmor("docker-default".into())
        );
        assert_eq!(
            S::parse("apparmor=unconfined"),
            S::AppArmor("unconfined".into())
        );
        // `=` is looked for first; `:` inside the value stays.
        assert_eq!(
            S::parse("label:type:svirt_t"),
            S::Label("type:svirt_t".into())
        );
        assert_eq!(
            S::parse("label=level:s0:c1"),
            S::Label("level:s0:c1".into())
        );
        assert_eq!(
            S::parse("seccomp:unconfined"),
            S::Seccomp("unconfined".into())
        );
        assert_eq!(
            S::parse("credentialspec:file://gmsa.json"),
            S::CredentialSpec("file://gmsa.json".into())
        );
        // moby daemon/daemon_unix_test.go: the two refusals.
        assert_eq!(
            S::parse("unknown"),
            S::Invalid(r#"invalid --security-opt 1: "unknown""#.into())
        );
        assert_eq!(
            S::parse("unknown=something"),
            S::Invalid(r#"invalid --security-opt 2: "unknown=something""#.into())
        );
        assert_eq!(
            S::parse("no-new-privileges=maybe"),
            S::Invalid(r#"invalid --security-opt 2: "no-new-privileges=maybe""#.into())
        );
    }

    #[test]
    fn what_is_applied() {
        let opts = parse_all(Some(&[
            "no-new-privileges".to_string(),
            "apparmor:a".into(),
            "no-new-privileges:false".into(),
            "apparmor:b".into(),
        ]));
        assert!(!no_new_privileges(&opts));
        assert_eq!(apparmor_profile(&opts), Some("b"));
        assert!(opts.iter().all(|o| o.not_applied().is_none()));
        assert!(S::parse("label:disable").not_applied().is_none());
        for o in [
            "label:type:x",
            "seccomp:unconfined",
            "credentialspec:x",
            "bogus",
        ] {
            assert!(S::parse(o).not_applied().is_some(), "{o}");
        }
    }
}
