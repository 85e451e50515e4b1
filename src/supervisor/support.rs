//! What of a task definition this host does not do yet: errors for what cannot be faked
//! (malformed `secrets` or S3 environment file ARNs, an AppArmor profile the host cannot
//! apply), warnings recorded on the task for what is skipped or done differently
//! (`taskdef::coverage`, `dockerSecurityOptions` entries not applied).
//! Also reads *local* `environmentFiles` into the environment at RunTask (a local
//! extension: ECS reads them only from S3; S3 files are read by the supervisor at task
//! start, `crate::supervisor::envfiles`), by the ECS agent's file rules.

use crate::supervisor::envfiles;
use crate::taskdef::coverage;
use crate::taskdef::finding::JsonPath;
use crate::taskdef::model::{KeyValuePair, TaskDefinition};
use crate::taskdef::security_options::SecurityOption;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    /// A `secrets` entry that names no SSM parameter or Secrets Manager secret (they are
    /// resolved by the supervisor at task start: `crate::supervisor::secrets`).
    #[error(transparent)]
    Secret(#[from] crate::supervisor::secrets::SecretError),
    #[error(
        "containerDefinitions[{idx}].environmentFiles[{k}].value: {value:?} is not an S3 object \
         ARN; ECS takes arn:aws:s3:::<bucket>/<key>.env"
    )]
    S3EnvironmentFile { idx: usize, k: usize, value: String },
    #[error(
        "containerDefinitions[{idx}].environmentFiles: {count} files; ECS takes at most {max} \
         (merge some of them)"
    )]
    TooManyEnvironmentFiles {
        idx: usize,
        count: usize,
        max: usize,
    },
    #[error(transparent)]
    Setting(#[from] crate::supervisor::spec::SpecBuildError),
    /// A runtimePlatform this host cannot run (refused before anything of the task exists).
    #[error(transparent)]
    Platform(#[from] crate::supervisor::isolation::platform::PlatformError),
    #[error("containerDefinitions[{idx}].dockerSecurityOptions[{k}]: apparmor:{profile}: {reason}")]
    AppArmor {
        idx: usize,
        k: usize,
        profile: String,
        #[source]
        reason: AppArmorError,
    },
    #[error("containerDefinitions[{idx}].environmentFiles: failed to read {path}")]
    ReadEnvironmentFile {
        idx: usize,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why this host cannot apply an AppArmor profile ([`check_apparmor`]).
#[derive(Debug, thiserror::Error)]
pub enum AppArmorError {
    /// `switch` is sysfs's `module/apparmor/parameters/enabled`.
    #[error(
        "AppArmor is not enabled on this host ({} is not Y); on ECS such a task is placed only \
         on instances registered with ECS_APPARMOR_CAPABLE=true. Remove the option or run the \
         task on a host with AppArmor",
        switch.display()
    )]
    NotEnabled { switch: PathBuf },
    /// `list` is securityfs's `kernel/security/apparmor/profiles`.
    #[error(
        "profile {profile:?} is not loaded in the kernel (not in {}); load it with \
         `apparmor_parser -r FILE`",
        list.display()
    )]
    NotLoaded { profile: String, list: PathBuf },
}

/// Ref: ecs.json `ContainerDefinition.environmentFiles`: "You can specify up to ten
/// environment files."
pub const MAX_ENVIRONMENT_FILES: usize = 10;

/// Checks `def` and resolves its local environment files into `environment` (which
/// keeps precedence, as in ECS; the first file that sets a name wins, as in the agent).
/// S3 files stay for the supervisor. Returns the warnings to record on the task.
pub fn prepare(def: &mut TaskDefinition) -> Result<Vec<String>, SupportError> {
    prepare_on(def, Path::new("/sys"))
}

/// Whether AppArmor is enabled, from sysfs at `sys` (`/sys` on the real host).
pub fn apparmor_enabled(sys: &Path) -> bool {
    std::fs::read_to_string(sys.join("module/apparmor/parameters/enabled"))
        .is_ok_and(|v| v.starts_with('Y'))
}

/// Refuses an AppArmor profile this host cannot apply, before anything of the task exists.
/// Ref: ecs.json `ContainerDefinition.dockerSecurityOptions`: ECS places such a task only on
/// an instance whose agent registered with ECS_APPARMOR_CAPABLE=true; Docker fails the
/// container when the profile is not loaded. `unconfined` needs nothing.
fn check_apparmor(sys: &Path, profile: &str) -> Result<(), AppArmorError> {
    if profile == "unconfined" {
        return Ok(());
    }
    if !apparmor_enabled(sys) {
        return Err(AppArmorError::NotEnabled {
            switch: sys.join("module/apparmor/parameters/enabled"),
        });
    }
    // Lines are "NAME (MODE)"; without securityfs the kernel still refuses an unknown
    // profile when the container starts, with its own error.
    let list = sys.join("kernel/security/apparmor/profiles");
    let Ok(loaded) = std::fs::read_to_string(&list) else {
        return Ok(());
    };
    let known = loaded
        .lines()
        .any(|l| l.rsplit_once(" (").map_or(l, |(n, _)| n) == profile);
    if known {
        Ok(())
    } else {
        Err(AppArmorError::NotLoaded {
            profile: profile.to_string(),
            list,
        })
    }
}

/// [`prepare`] with the host's sysfs at `sys`.
pub fn prepare_on(def: &mut TaskDefinition, sys: &Path) -> Result<Vec<String>, SupportError> {
    // Nothing silent: what `validate` says this host does not honour, the task says too;
    // ephemeralStorage's depends on this host's setting, which `ephemeral` knows.
    let ephemeral = JsonPath::root().key("ephemeralStorage");
    let members: Vec<_> = coverage::members(def)
        .into_iter()
        .filter(|f| !f.path.starts_with(&ephemeral))
        .collect();
    let mut warnings = coverage::task_warnings(&members);
    crate::supervisor::secrets::wanted(def)?;
    warnings.extend(crate::supervisor::isolation::ephemeral::warning(def));
    crate::supervisor::isolation::platform::check(
        def,
        &crate::supervisor::isolation::platform::binfmt_dir(),
    )?;
    for (idx, c) in def.container_definitions.iter_mut().flatten().enumerate() {
        for (k, o) in c.docker_security_options.iter().flatten().enumerate() {
            let o = SecurityOption::parse(o);
            if let SecurityOption::AppArmor(profile) = &o {
                check_apparmor(sys, profile).map_err(|reason| SupportError::AppArmor {
                    idx,
                    k,
                    profile: profile.clone(),
                    reason,
                })?;
            }
        }
        let files = c.environment_files.as_deref().unwrap_or_default();
        if files.len() > MAX_ENVIRONMENT_FILES {
            return Err(SupportError::TooManyEnvironmentFiles {
                idx,
                count: files.len(),
                max: MAX_ENVIRONMENT_FILES,
            });
        }
        let mut local = Vec::new();
        let mut kept = Vec::new();
        for (k, f) in files.iter().enumerate() {
            let value = f.value.clone().unwrap_or_default();
            if envfiles::is_s3(&value, f.kind) {
                if envfiles::parse_s3_arn(&value).is_none() {
                    return Err(SupportError::S3EnvironmentFile { idx, k, value });
                }
                kept.push(f.clone());
                continue;
            }
            let text = std::fs::read_to_string(&value).map_err(|source| {
                SupportError::ReadEnvironmentFile {
                    idx,
                    path: value.clone(),
                    source,
                }
            })?;
            local.push(envfiles::parse(&text));
        }
        if !local.is_empty() {
            let env = c.environment.get_or_insert_with(Vec::new);
            for (k, v) in envfiles::merge(&local) {
                if !env.iter().any(|e| e.name.as_deref() == Some(k.as_str())) {
                    env.push(KeyValuePair {
                        name: Some(k),
                        value: Some(v),
                    });
                }
            }
            c.environment_files = (!kept.is_empty()).then_some(kept);
        }
        crate::supervisor::spec::check_sysctls(idx, c)?;
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(json: &str) -> TaskDefinition {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn bad_secrets_and_s3_files_are_errors_naming_them() {
        let mut d = def(
            r#"{"containerDefinitions":[{"name":"a"},{"name":"b","secrets":[{"name":"DB","valueFrom":"arn:aws:ssm:us-east-1:1:parameter/db"}]}]}"#,
        );
        assert!(prepare(&mut d).is_ok());
        let mut d = def(
            r#"{"containerDefinitions":[{"name":"a"},{"name":"b","secrets":[{"name":"DB","valueFrom":"arn:aws:s3:::b/db"}]}]}"#,
        );
        let e = prepare(&mut d).unwrap_err().to_string();
        assert!(
            e.starts_with("containerDefinitions[1].secrets[0].valueFrom"),
            "{e}"
        );
        // S3 files are left for the supervisor; a malformed ARN or an 11th file is refused.
        let mut d = def(
            r#"{"containerDefinitions":[{"name":"a","environmentFiles":[{"value":"arn:aws:s3:::b/x.env","type":"s3"}]}]}"#,
        );
        assert!(prepare(&mut d).unwrap().is_empty());
        assert_eq!(
            d.container_definitions.as_ref().unwrap()[0]
                .environment_files
                .as_ref()
                .unwrap()
                .len(),
            1
        );
        let mut d = def(
            r#"{"containerDefinitions":[{"name":"a","environmentFiles":[{"value":"arn:aws:s3:::bucket-only","type":"s3"}]}]}"#,
        );
        let e = prepare(&mut d).unwrap_err().to_string();
        assert!(
            e.starts_with("containerDefinitions[0].environmentFiles[0].value: \"arn:aws:s3:::bucket-only\" is not an S3 object ARN"),
            "{e}"
        );
        let eleven = [r#"{"value":"arn:aws:s3:::b/x.env","type":"s3"}"#; 11].join(",");
        let mut d = def(&format!(
            r#"{{"containerDefinitions":[{{"name":"a","environmentFiles":[{eleven}]}}]}}"#
        ));
        let e = prepare(&mut d).unwrap_err().to_string();
        assert!(e.contains("11 files; ECS takes at most 10"), "{e}");
    }

    #[test]
    fn apparmor_needs_the_host_and_the_profile_and_what_is_not_applied_warns() {
        let sys = tempfile::tempdir().unwrap();
        let json = r#"{"containerDefinitions":[{"name":"a","dockerSecurityOptions":
            ["no-new-privileges","apparmor:web","label:type:x","seccomp:unconfined"]}]}"#;
        let e = prepare_on(&mut def(json), sys.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("containerDefinitions[0].dockerSecurityOptions[1]: apparmor:web: AppArmor is not enabled"),
            "{e}"
        );
        let p = sys.path().join("module/apparmor/parameters");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("enabled"), "Y\n").unwrap();
        let k = sys.path().join("kernel/security/apparmor");
        std::fs::create_dir_all(&k).unwrap();
        std::fs::write(k.join("profiles"), "docker-default (enforce)\n").unwrap();
        let e = prepare_on(&mut def(json), sys.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("profile \"web\" is not loaded"), "{e}");
        std::fs::write(
            k.join("profiles"),
            "docker-default (enforce)\nweb (complain)\n",
        )
        .unwrap();
        // Applied: no warning for them; label and seccomp: the coverage table's, one line.
        let w = prepare_on(&mut def(json), sys.path()).unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "containerDefinitions[0].dockerSecurityOptions: not applied here: label:type:x: this host"
            ) && w[0].contains("seccomp:unconfined: not applied, here as on ECS")
                && !w[0].contains("apparmor"),
            "{w:?}"
        );
        // unconfined needs no AppArmor at all.
        let bare = tempfile::tempdir().unwrap();
        let json = r#"{"containerDefinitions":[{"name":"a","dockerSecurityOptions":["apparmor:unconfined"]}]}"#;
        assert!(prepare_on(&mut def(json), bare.path()).unwrap().is_empty());
    }

    #[test]
    fn local_env_files_fill_in_under_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.env");
        std::fs::write(&f, "# comment\nA=file\nB=file=with=equals\n\n").unwrap();
        let mut d = def(&format!(
            r#"{{"containerDefinitions":[{{"name":"a","environment":[{{"name":"A","value":"env"}}],
                "environmentFiles":[{{"value":"{}","type":"s3"}}],"healthCheck":{{"command":["CMD","true"]}}}}]}}"#,
            f.display()
        ));
        let w = prepare(&mut d).unwrap();
        // A local path is what ECS would not take: the task says so.
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "containerDefinitions[0].environmentFiles[0].value: honoured with a local \
                 difference: "
            ),
            "{w:?}"
        );
        let env = d.container_definitions.unwrap()[0]
            .environment
            .clone()
            .unwrap();
        let got: Vec<_> = env
            .iter()
            .map(|e| {
                format!(
                    "{}={}",
                    e.name.as_deref().unwrap(),
                    e.value.as_deref().unwrap()
                )
            })
            .collect();
        assert_eq!(got, ["A=env", "B=file=with=equals"]);
    }

    /// The AppArmor refusals word for word, through `prepare_on` (a fake sysfs).
    #[test]
    fn apparmor_refusals_read_as_before() {
        let sys = tempfile::tempdir().unwrap();
        let d = || {
            def(
                r#"{"containerDefinitions":[{"name":"a","dockerSecurityOptions":["apparmor:web"]}]}"#,
            )
        };
        let e = prepare_on(&mut d(), sys.path()).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "containerDefinitions[0].dockerSecurityOptions[0]: apparmor:web: AppArmor is not \
                 enabled on this host ({}/module/apparmor/parameters/enabled is not Y); on ECS \
                 such a task is placed only on instances registered with \
                 ECS_APPARMOR_CAPABLE=true. Remove the option or run the task on a host with \
                 AppArmor",
                sys.path().display()
            )
        );
        let params = sys.path().join("module/apparmor/parameters");
        std::fs::create_dir_all(&params).unwrap();
        std::fs::write(params.join("enabled"), "Y\n").unwrap();
        let sec = sys.path().join("kernel/security/apparmor");
        std::fs::create_dir_all(&sec).unwrap();
        std::fs::write(sec.join("profiles"), "other (enforce)\n").unwrap();
        let e = prepare_on(&mut d(), sys.path()).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "containerDefinitions[0].dockerSecurityOptions[0]: apparmor:web: profile \"web\" \
                 is not loaded in the kernel (not in {}/kernel/security/apparmor/profiles); load \
                 it with `apparmor_parser -r FILE`",
                sys.path().display()
            )
        );
    }
}
