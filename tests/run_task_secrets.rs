//! Root integration tests of `secrets`: resolved at task start from moto_server's SSM
//! Parameter Store and Secrets Manager (plain and `json-key`), or from `--secrets-file`;
//! a missing one fails the task with ECS's reason; values appear only inside the task.

use crate::common;

use common::busybox_task_env;
use common::cli::Mf;
use common::image::{Compression, Layer, busybox_all_applets};
use common::registry::Registry;
use common::services::{Server, aws};
use common::util::readable_by_nobody;
use serde_json::Value;

const BUSYBOX: &str = "public.ecr.aws/docker/library/busybox:1.36";

struct Env {
    mf: Mf,
    _reg: Registry,
}

impl Env {
    fn new() -> Env {
        let (mf, reg) = busybox_task_env(Layer::new(
            Compression::Gzip,
            busybox_all_applets("run-task-secrets"),
        ));
        Env { mf, _reg: reg }
    }

    fn describe(&self, id: &str) -> Value {
        common::cli::describe_task(&self.mf, id)
    }

    /// Runs `taskdef` detached; waits until it is RUNNING or STOPPED and returns it.
    fn run(&self, name: &str, taskdef: &str, extra: &[&str]) -> (String, Value) {
        common::cli::run_settled(&self.mf, name, taskdef, extra)
    }

    fn printenv(&self, id: &str) -> String {
        let out = self.mf.run(&["exec", id, "--", "env"]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn stop(&self, id: &str) {
        common::cli::stop_and_wait(&self.mf, id)
    }

    /// Every file minifargate wrote (store, logs, task dirs), as bytes, with its path.
    fn written_files(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![self.mf.root.clone(), self.mf.run_root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                let Ok(ft) = e.file_type() else { continue };
                // Image layers and blobs hold only what the test image has.
                let name = e.file_name().to_string_lossy().into_owned();
                if ft.is_dir() && !["layers", "blobs"].contains(&name.as_str()) {
                    stack.push(p);
                } else if ft.is_file() {
                    out.push((
                        p.display().to_string(),
                        std::fs::read(&p).unwrap_or_default(),
                    ));
                }
            }
        }
        out
    }
}

const ROLE: &str = "arn:aws:iam::123456789012:role/exec";

/// A task definition with `secrets`; ECS requires an `executionRoleArn` with them, so one is
/// set unless `extra` sets its own.
fn taskdef(family: &str, extra: &str, secrets: &str) -> String {
    let extra = if extra.contains("executionRoleArn") {
        extra.to_string()
    } else {
        format!(r#"{extra},"executionRoleArn":"{ROLE}""#)
    };
    format!(
        r#"{{"family":"{family}","networkMode":"awsvpc","cpu":"256","memory":"512"{extra},
            "containerDefinitions":[{{"name":"app","image":"{BUSYBOX}","stopTimeout":2,
              "secrets":{secrets},
              "command":["sh","-c","trap 'exit 0' TERM; while true; do sleep 1; done"]}}]}}"#
    )
}

/// Secret values must not show in describe-tasks, inspect, logs or any file we wrote.
fn assert_nowhere(env: &Env, id: &str, values: &[&str]) {
    let described = serde_json::to_string(&env.describe(id)).unwrap();
    let inspect = env.mf.run(&["inspect", id, "--format", "json"]);
    let inspected = String::from_utf8_lossy(&inspect.stdout).into_owned();
    assert!(inspect.status.success() && !inspected.is_empty());
    let logs = String::from_utf8_lossy(&env.mf.run(&["logs", id]).stdout).into_owned();
    for v in values {
        assert!(!described.contains(v), "{v} in describe-tasks");
        assert!(!inspected.contains(v), "{v} in inspect");
        assert!(!logs.contains(v), "{v} in logs");
        for (path, bytes) in env.written_files() {
            // The runtime's OCI bundle holds the container's environment, as Docker's
            // container config does; it lives under the run root, owner-only (0600 in
            // 0700 dirs, another_user_cannot_read_a_running_tasks_secrets), and goes with
            // the task.
            if path.ends_with("config.json") && path.contains("/runtime/") {
                continue;
            }
            let hay = String::from_utf8_lossy(&bytes);
            assert!(!hay.contains(v), "{v} in {path}");
        }
    }
}

#[test]
fn secrets_from_moto_ssm_and_secrets_manager() {
    let mut env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let moto = Server::moto(work.path());
    env.mf.set_env("AWS_ENDPOINT_URL", moto.url());
    env.mf.set_env("AWS_ACCESS_KEY_ID", "testing");
    env.mf.set_env("AWS_SECRET_ACCESS_KEY", "testing");
    env.mf.set_env("AWS_REGION", "us-east-1");
    aws(
        &moto,
        &[
            "ssm",
            "put-parameter",
            "--name",
            "/app/db/password",
            "--type",
            "SecureString",
            "--value",
            "ssm-Pa55-1",
        ],
    );
    aws(
        &moto,
        &[
            "ssm",
            "put-parameter",
            "--name",
            "plainparam",
            "--type",
            "String",
            "--value",
            "ssm-plain-2",
        ],
    );
    let json_secret = aws(
        &moto,
        &[
            "secretsmanager",
            "create-secret",
            "--name",
            "db-creds",
            "--secret-string",
            r#"{"user":"sm-user-3","password":"sm-Pa55-4"}"#,
        ],
    );
    let plain_secret = aws(
        &moto,
        &[
            "secretsmanager",
            "create-secret",
            "--name",
            "api-key",
            "--secret-string",
            "sm-plain-5",
        ],
    );
    let json_arn = json_secret["ARN"].as_str().unwrap();
    let plain_arn = plain_secret["ARN"].as_str().unwrap();
    let secrets = format!(
        r#"[{{"name":"DB_PASSWORD","valueFrom":"/app/db/password"}},
            {{"name":"PLAIN","valueFrom":"arn:aws:ssm:us-east-1:123456789012:parameter/plainparam"}},
            {{"name":"DB_USER","valueFrom":"{json_arn}:user::"}},
            {{"name":"DB_PASS2","valueFrom":"{json_arn}:password:AWSCURRENT:"}},
            {{"name":"API_KEY","valueFrom":"{plain_arn}"}}]"#
    );
    // With an execution role: assumed through (moto's) STS first, as the agent does; with
    // debug logs in the supervisor log, where no value may show either.
    let (id, t) = env.run(
        "sec",
        &taskdef(
            "sec",
            r#","executionRoleArn":"arn:aws:iam::123456789012:role/exec""#,
            &secrets,
        ),
        &["--log-level", "debug"],
    );
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    let vars = env.printenv(&id);
    for want in [
        "DB_PASSWORD=ssm-Pa55-1",
        "PLAIN=ssm-plain-2",
        "DB_USER=sm-user-3",
        "DB_PASS2=sm-Pa55-4",
        "API_KEY=sm-plain-5",
    ] {
        assert!(vars.lines().any(|l| l == want), "{want} not in {vars}");
    }
    env.stop(&id);
    assert_nowhere(
        &env,
        &id,
        &[
            "ssm-Pa55-1",
            "ssm-plain-2",
            "sm-user-3",
            "sm-Pa55-4",
            "sm-plain-5",
        ],
    );

    // A parameter that does not exist: the task fails to start with ECS's reason.
    let (_, t) = env.run(
        "missing",
        &taskdef(
            "missing",
            "",
            r#"[{"name":"X","valueFrom":"/app/missing"}]"#,
        ),
        &[],
    );
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    assert_eq!(t["stopCode"], "TaskFailedToStart");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert_eq!(
        reason,
        "ResourceInitializationError: unable to pull secrets or registry auth: execution \
         resource retrieval failed: unable to retrieve secrets from ssm: invalid parameters: \
         /app/missing"
    );
    assert_eq!(t["containers"][0]["reason"], reason);
    assert!(t["containers"][0].get("exitCode").is_none());
    // A missing json key of a secret that exists.
    let (_, t) = env.run(
        "nokey",
        &taskdef(
            "nokey",
            "",
            &format!(r#"[{{"name":"X","valueFrom":"{json_arn}:nope::"}}]"#),
        ),
        &[],
    );
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "ResourceInitializationError: unable to pull secrets or registry auth: execution \
             resource retrieval failed: unable to retrieve secret from asm:"
        ) && reason.contains("did not contain json key nope"),
        "{reason}"
    );
}

#[test]
fn secrets_from_a_local_file() {
    let env = Env::new();
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf";
    let file = env.mf.dir.path().join("secrets.json");
    std::fs::write(
        &file,
        format!(r#"{{"/app/token":"file-t0k3n-6","{arn}":{{"user":"file-user-7"}}}}"#),
    )
    .unwrap();
    let secrets = format!(
        r#"[{{"name":"TOKEN","valueFrom":"/app/token"}},{{"name":"USER","valueFrom":"{arn}:user::"}}]"#
    );
    let f = file.display().to_string();
    let (id, t) = env.run(
        "file",
        &taskdef("file", "", &secrets),
        &["--secrets-file", &f],
    );
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    let vars = env.printenv(&id);
    assert!(vars.lines().any(|l| l == "TOKEN=file-t0k3n-6"), "{vars}");
    assert!(vars.lines().any(|l| l == "USER=file-user-7"), "{vars}");
    env.stop(&id);
    assert_nowhere(&env, &id, &["file-t0k3n-6", "file-user-7"]);

    // Not in the file: the task fails with the reason naming the secret (no AWS call).
    let (_, t) = env.run(
        "file2",
        &taskdef("file2", "", r#"[{"name":"NOPE","valueFrom":"/app/nope"}]"#),
        &["--secrets-file", &f],
    );
    assert_eq!(t["lastStatus"], "STOPPED");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.starts_with("ResourceInitializationError: unable to pull secrets or registry auth:")
            && reason.contains("secret NOPE (/app/nope) is not in --secrets-file"),
        "{reason}"
    );
    // A bad file or a malformed valueFrom is refused before the task exists.
    std::fs::write(&file, "[1]").unwrap();
    let e = env.mf.fail(&[
        "run-task",
        "--task-definition",
        &env.mf.taskdef("f3", &taskdef("f3", "", "[]")),
        "--secrets-file",
        &f,
    ]);
    assert!(
        e.contains("--secrets-file") && e.contains("not a JSON object"),
        "{e}"
    );
    let e = env.mf.fail(&[
        "run-task",
        "--task-definition",
        &env.mf.taskdef(
            "f4",
            &taskdef("f4", "", r#"[{"name":"X","valueFrom":"arn:aws:s3:::b/k"}]"#),
        ),
    ]);
    assert!(
        e.contains("containerDefinitions[0].secrets[0].valueFrom"),
        "{e}"
    );
}

/// A running task's resolved secrets (SSM, Secrets Manager, an S3 environment file) are
/// in its containers' environment, and so in files of the task on the host (the OCI
/// bundle's config.json): none of those files, nor any other of the task's, can be read
/// by another user. The test's roots sit under a world-searchable dir, as /var/lib and
/// /run do, so the walk as `nobody` reaches whatever the modes minifargate gives let it.
#[test]
fn another_user_cannot_read_a_running_tasks_secrets() {
    use std::os::unix::fs::PermissionsExt;
    let mut env = Env::new();
    std::fs::set_permissions(env.mf.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let moto = Server::moto(work.path());
    env.mf.set_env("AWS_ENDPOINT_URL", moto.url());
    env.mf.set_env("AWS_ACCESS_KEY_ID", "testing");
    env.mf.set_env("AWS_SECRET_ACCESS_KEY", "testing");
    env.mf.set_env("AWS_REGION", "us-east-1");
    aws(
        &moto,
        &[
            "ssm",
            "put-parameter",
            "--name",
            "/walk/password",
            "--type",
            "SecureString",
            "--value",
            "walk-ssm-Pa55",
        ],
    );
    let sm = aws(
        &moto,
        &[
            "secretsmanager",
            "create-secret",
            "--name",
            "walk-creds",
            "--secret-string",
            r#"{"token":"walk-sm-t0ken"}"#,
        ],
    );
    aws(&moto, &["s3api", "create-bucket", "--bucket", "walk-envs"]);
    let body = work.path().join("app.env");
    std::fs::write(&body, "FROM_S3=walk-s3-k3y\n").unwrap();
    aws(
        &moto,
        &[
            "s3api",
            "put-object",
            "--bucket",
            "walk-envs",
            "--key",
            "app.env",
            "--body",
            body.to_str().unwrap(),
        ],
    );
    let sm_arn = sm["ARN"].as_str().unwrap();
    // The container's `secrets`, then (the same member list) its S3 environment file.
    let secrets = format!(
        r#"[{{"name":"DB_PASSWORD","valueFrom":"/walk/password"}},
            {{"name":"TOKEN","valueFrom":"{sm_arn}:token::"}}],
           "environmentFiles":[{{"value":"arn:aws:s3:::walk-envs/app.env","type":"s3"}}]"#
    );
    let (id, t) = env.run(
        "walk",
        &taskdef(
            "walk",
            r#","executionRoleArn":"arn:aws:iam::123456789012:role/exec""#,
            &secrets,
        ),
        &[],
    );
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    let values = ["walk-ssm-Pa55", "walk-sm-t0ken", "walk-s3-k3y"];
    let vars = env.printenv(&id);
    for v in values {
        assert!(
            vars.contains(v),
            "{v} not in the container's environment: {vars}"
        );
    }
    // The control: as root, the walk finds the values on the host (the bundle), so a walk
    // that finds nothing as nobody means the modes stopped it, not that it looked in the
    // wrong place.
    let as_root: Vec<String> = env
        .written_files()
        .into_iter()
        .filter(|(_, b)| {
            let s = String::from_utf8_lossy(b);
            values.iter().all(|v| s.contains(v))
        })
        .map(|(p, _)| p)
        .collect();
    assert!(!as_root.is_empty(), "no file of the task holds the values");
    // Everything the test's minifargate wrote lives under its dir (state root, run root),
    // besides the task's netns mount, which holds no file.
    let netns = std::path::PathBuf::from(format!("/run/netns/mfg-{id}"));
    let mut dirs = vec![env.mf.dir.path()];
    if netns.exists() {
        dirs.push(&netns);
    }
    let (hits, readable) = readable_by_nobody(&dirs, &values);
    assert!(
        hits.is_empty(),
        "nobody can read secret values in {hits:?} (root sees them in {as_root:?}; nobody \
         reads {readable:?})"
    );
    // And each file that holds them is owner-only itself, whatever the dirs above it.
    for path in &as_root {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{path} is mode {mode:o}");
    }
    // The walk itself worked: nobody reads the files the test left open on purpose.
    let probe = env.mf.dir.path().join("probe");
    std::fs::write(&probe, "walk-ssm-Pa55").unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (hits, _) = readable_by_nobody(&dirs, &values);
    assert_eq!(hits, vec![probe.display().to_string()]);
    std::fs::remove_file(&probe).unwrap();
    env.stop(&id);
}
