//! Root integration tests of the execution role: a task's start-up calls act as its
//! `executionRoleArn` (assumed through moto_server's STS), as the ECS agent's do.
//! - `repositoryCredentials`: a Secrets Manager secret's username and password let a
//!   private image (the htpasswd registry) be pulled; a wrong one fails with a clear reason
//!   and leaves nothing behind.
//! - `environmentFiles` in S3 (moto's S3): their variables are inside the container, by
//!   ECS's rules (the first file wins, `environment` wins over files, `#` comments).
//! - ECR: with moto's IAM enforcement on, a role without ecr:GetAuthorizationToken fails the
//!   task even though the host's credentials could pull; `--execution-credentials host`
//!   uses the host's instead; a role with it gets the token that opens the TLS registry at
//!   the ECR name on 443 (tests/common/ecr.rs), and the image pulled that way runs; a task
//!   whose role lacks it is refused that image although it is cached.

use crate::common;

use common::cli::{Mf, describe_task as describe, run_settled as run, stop_and_wait as stop};
use common::ecr::{ECR_PASSWORD, in_private_hosts, lock_port_443};
use common::image::{Compression, Layer, busybox_all_applets};
use common::leaks::assert_no_leaks;
use common::push_image;
use common::registry::{Registry, RegistryOpts};
use common::services::{Server, aws, aws_command};
use std::process::Command;

const ROLE: &str = "arn:aws:iam::123456789012:role/exec";
use common::ecr::ECR_HOST;

fn taskdef(family: &str, image: &str, container_extra: &str) -> String {
    format!(
        r#"{{"family":"{family}","networkMode":"awsvpc","cpu":"256","memory":"512",
            "executionRoleArn":"{ROLE}",
            "containerDefinitions":[{{"name":"app","image":"{image}","stopTimeout":2
              {container_extra},
              "command":["sh","-c","trap 'exit 0' TERM; while true; do sleep 1; done"]}}]}}"#
    )
}

fn pointed_at(mf: &mut Mf, moto: &Server) {
    mf.set_env("AWS_ENDPOINT_URL", moto.url());
    mf.set_env("AWS_ACCESS_KEY_ID", "testing");
    mf.set_env("AWS_SECRET_ACCESS_KEY", "testing");
    mf.set_env("AWS_REGION", "us-east-1");
}

#[test]
fn private_registry_and_s3_environment_files_through_the_execution_role() {
    let work = tempfile::tempdir().unwrap();
    let moto = Server::moto(work.path());
    let reg = Registry::start(RegistryOpts {
        htpasswd: Some(("alice".into(), "s3cret-pw".into())),
        ..Default::default()
    });
    push_image(
        &reg,
        work.path(),
        "private/app:1",
        &[Layer::new(
            Compression::Gzip,
            busybox_all_applets("exec-role"),
        )],
    );
    let image = format!("{}/private/app:1", reg.host());
    // The host has no credentials for this registry (its DOCKER_CONFIG is empty).
    let mut mf = Mf::new();
    pointed_at(&mut mf, &moto);
    assert!(!mf.run(&["pull", &image]).status.success());

    let good = aws(
        &moto,
        &[
            "secretsmanager",
            "create-secret",
            "--name",
            "registry-creds",
            "--secret-string",
            r#"{"username":"alice","password":"s3cret-pw"}"#,
        ],
    );
    aws(
        &moto,
        &[
            "secretsmanager",
            "create-secret",
            "--name",
            "registry-wrong",
            "--secret-string",
            r#"{"username":"alice","password":"not-it"}"#,
        ],
    );
    aws(&moto, &["s3api", "create-bucket", "--bucket", "envs"]);
    let put = |key: &str, body: &str| {
        let f = work.path().join(key.replace('/', "_"));
        std::fs::write(&f, body).unwrap();
        aws(
            &moto,
            &[
                "s3api",
                "put-object",
                "--bucket",
                "envs",
                "--key",
                key,
                "--body",
                f.to_str().unwrap(),
            ],
        );
    };
    put(
        "app/first.env",
        "# a comment\nFROM_FIRST=1\nSHARED=first\nURL=http://x/?a=b\n#HIDDEN=1\nEMPTY=\n",
    );
    put(
        "app/second.env",
        "SHARED=second\nFROM_SECOND=2\nOVERRIDDEN=file\n",
    );

    let good_arn = good["ARN"].as_str().unwrap();
    let extra = format!(
        r#","repositoryCredentials":{{"credentialsParameter":"{good_arn}"}},
           "environment":[{{"name":"OVERRIDDEN","value":"environment"}}],
           "environmentFiles":[{{"value":"arn:aws:s3:::envs/app/first.env","type":"s3"}},
                               {{"value":"arn:aws:s3:::envs/app/second.env","type":"s3"}}]"#
    );
    let (id, t) = run(&mf, "priv", &taskdef("priv", &image, &extra), &[]);
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    let out = mf.run(&["exec", &id, "--", "env"]);
    assert!(out.status.success());
    let vars = String::from_utf8_lossy(&out.stdout).into_owned();
    for want in [
        "FROM_FIRST=1",
        "FROM_SECOND=2",
        "SHARED=first",
        "URL=http://x/?a=b",
        "OVERRIDDEN=environment",
    ] {
        assert!(vars.lines().any(|l| l == want), "{want} not in {vars}");
    }
    for absent in ["HIDDEN=", "EMPTY="] {
        assert!(
            !vars.lines().any(|l| l.starts_with(absent)),
            "{absent} in {vars}"
        );
    }
    stop(&mf, &id);

    // A wrong password (the secret by name, as ECS allows in the task's region): the task
    // fails to start, naming the registry and the secret; the image is not cached.
    push_image(
        &reg,
        work.path(),
        "private/app:2",
        &[Layer::new(
            Compression::Gzip,
            busybox_all_applets("exec-role-2"),
        )],
    );
    let image2 = format!("{}/private/app:2", reg.host());
    let extra = r#","repositoryCredentials":{"credentialsParameter":"registry-wrong"}"#;
    let (bad, t) = run(&mf, "wrong", &taskdef("wrong", &image2, extra), &[]);
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    assert_eq!(t["stopCode"], "TaskFailedToStart");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.starts_with("CannotPullContainerError: ")
            && reason.contains(&format!("401 Unauthorized from {}", reg.host()))
            && reason.contains("the Secrets Manager secret registry-wrong (repositoryCredentials)")
            && reason.contains("were rejected"),
        "{reason}"
    );
    assert!(
        !mf.images()
            .iter()
            .any(|i| i["reference"] == image2.as_str()),
        "{:?}",
        mf.images()
    );
    mf.assert_tmp_empty();

    // A missing S3 object: ECS's reason names the key and the bucket.
    let extra = format!(
        r#","repositoryCredentials":{{"credentialsParameter":"{good_arn}"}},
           "environmentFiles":[{{"value":"arn:aws:s3:::envs/app/missing.env","type":"s3"}}]"#
    );
    let (missing, t) = run(&mf, "missing", &taskdef("missing", &image, &extra), &[]);
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "ResourceInitializationError: failed to download env files: unable to download env \
             file with key app/missing.env from bucket envs as the execution role"
        ),
        "{reason}"
    );
    assert_no_leaks(&mf, &[&id, &bad, &missing], &[]);
}

/// moto's IAM: a host user that may only assume roles and a role without ECR permissions;
/// then moto enforces IAM for every later call.
fn iam_enforced(moto: &Server) -> (String, String) {
    let allow = |actions: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":{actions},"Resource":"*"}}]}}"#
        )
    };
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}"#;
    aws(moto, &["iam", "create-user", "--user-name", "host"]);
    aws(
        moto,
        &[
            "iam",
            "put-user-policy",
            "--user-name",
            "host",
            "--policy-name",
            "assume",
            "--policy-document",
            &allow(r#"["sts:AssumeRole"]"#),
        ],
    );
    let key = aws(moto, &["iam", "create-access-key", "--user-name", "host"]);
    aws(
        moto,
        &[
            "iam",
            "create-role",
            "--role-name",
            "exec",
            "--assume-role-policy-document",
            trust,
        ],
    );
    aws(
        moto,
        &[
            "iam",
            "put-role-policy",
            "--role-name",
            "exec",
            "--policy-name",
            "p",
            "--policy-document",
            &allow(r#"["secretsmanager:GetSecretValue"]"#),
        ],
    );
    // A second role that may get ECR tokens.
    aws(
        moto,
        &[
            "iam",
            "create-role",
            "--role-name",
            "puller",
            "--assume-role-policy-document",
            trust,
        ],
    );
    aws(
        moto,
        &[
            "iam",
            "put-role-policy",
            "--role-name",
            "puller",
            "--policy-name",
            "p",
            "--policy-document",
            &allow(r#"["ecr:GetAuthorizationToken"]"#),
        ],
    );
    let out = common::util::run_ok(
        common::util::no_proxy(&mut Command::new("curl"))
            .args([
                "-sf",
                "-X",
                "POST",
                "-H",
                "Content-Type: text/plain",
                "-d",
                "0",
            ])
            .arg(format!("{}/moto-api/reset-auth", moto.url())),
    );
    assert!(out.status.success());
    (
        key["AccessKey"]["AccessKeyId"]
            .as_str()
            .unwrap()
            .to_string(),
        key["AccessKey"]["SecretAccessKey"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

#[test]
fn ecr_auth_acts_as_the_execution_role() {
    let work = tempfile::tempdir().unwrap();
    let moto = Server::moto(work.path());
    let (key, secret) = iam_enforced(&moto);
    // IAM is enforced now: the host user may assume roles but not call ECR itself.
    let denied = aws_command(&moto, &key, &secret)
        .args(["ecr", "get-authorization-token"])
        .output()
        .unwrap();
    assert!(!denied.status.success(), "moto does not enforce IAM");

    let mut mf = Mf::new();
    pointed_at(&mut mf, &moto);
    mf.set_env("AWS_ACCESS_KEY_ID", &key);
    mf.set_env("AWS_SECRET_ACCESS_KEY", &secret);
    let image = format!("{ECR_HOST}/web:1");

    // The role lacks ecr:GetAuthorizationToken: ECS's reason, naming role and registry.
    let (a, t) = run(&mf, "denied", &taskdef("denied", &image, ""), &[]);
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    assert_eq!(t["stopCode"], "TaskFailedToStart");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "ResourceInitializationError: unable to pull secrets or registry auth: execution \
             resource retrieval failed: unable to retrieve ecr registry auth: failed to get an \
             ECR authorization token for 123456789012.dkr.ecr.us-east-1.amazonaws.com with the \
             credentials of the execution role arn:aws:iam::123456789012:role/exec"
        ) && reason.contains("AccessDenied")
            && reason.contains("is not authorized to perform: ecr:GetAuthorizationToken"),
        "{reason}"
    );
    assert_eq!(t["containers"][0]["reason"], reason);

    // A role that does not exist: moto's STS still hands out credentials (real STS would
    // refuse: "unable to assume the execution role …"), and ECR fails with them (moto
    // answers 500); either way the reason names the role.
    let unknown = taskdef("unknown", &image, "").replace("role/exec", "role/nope");
    let (b, t) = run(&mf, "unknown", &unknown, &[]);
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.contains("arn:aws:iam::123456789012:role/nope"),
        "{reason}"
    );

    // `--execution-credentials host`: the host's credentials, which ECR refuses too here;
    // the reason says so (and names no role).
    let (c, t) = run(
        &mf,
        "hostcreds",
        &taskdef("hostcreds", &image, ""),
        &["--execution-credentials", "host"],
    );
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.starts_with("CannotPullContainerError: ")
            && reason.contains("failed to get an ECR authorization token for 123456789012")
            && !reason.contains("role/exec"),
        "{reason}"
    );
    assert_no_leaks(&mf, &[&a, &b, &c], &[]);
}

#[test]
fn an_ecr_image_pulled_with_the_execution_roles_token_runs() {
    let _lock = lock_port_443();
    let work = tempfile::tempdir().unwrap();
    let (ca, _reg, hosts) = ecr_registry(work.path(), "ecr-role");
    let moto = Server::moto(work.path());
    let (key, secret) = iam_enforced(&moto);

    let mut mf = Mf::new();
    pointed_at(&mut mf, &moto);
    mf.set_env("AWS_ACCESS_KEY_ID", &key);
    mf.set_env("AWS_SECRET_ACCESS_KEY", &secret);
    mf.set_env("SSL_CERT_FILE", &ca.cert);
    let def = taskdef("pulled", &format!("{ECR_HOST}/web:1"), "")
        .replace("role/exec", "role/puller")
        .replace(
            r#""command":["sh","-c","trap 'exit 0' TERM; while true; do sleep 1; done"]"#,
            r#""command":["sh","-c","echo pulled-with-the-role"]"#,
        );
    let td = mf.taskdef("pulled", &def);
    // The host user may not call ECR (IAM enforced), so only the role's token opens the
    // registry; the attached run-task prints the container's line and its exit code.
    let out = in_private_hosts(&mf, &hosts, &["run-task", "--task-definition", &td]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("app | pulled-with-the-role"), "{stdout}");
    let arn = mf.json(&["list-tasks", "--desired-status", "STOPPED"])["taskArns"][0]
        .as_str()
        .unwrap()
        .to_string();
    let id = arn.rsplit('/').next().unwrap().to_string();
    let t = describe(&mf, &id);
    assert_eq!(t["stopCode"], "EssentialContainerExited", "{t:#}");
    assert_eq!(t["containers"][0]["exitCode"], 0, "{t:#}");
    assert!(
        t["containers"][0]["imageDigest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{t:#}"
    );

    // The image is cached now, but a task whose execution role may not pull from ECR
    // (role/exec lacks ecr:GetAuthorizationToken) is refused it: the default pull policy
    // asks the registry with the task's credentials before it runs a cached image.
    let (denied, t) = run(
        &mf,
        "cached",
        &taskdef("cached", &format!("{ECR_HOST}/web:1"), ""),
        &[],
    );
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    assert_eq!(t["stopCode"], "TaskFailedToStart", "{t:#}");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.contains("unable to retrieve ecr registry auth")
            && reason.contains("role/exec")
            && reason.contains("ecr:GetAuthorizationToken"),
        "{reason}"
    );
    assert_no_leaks(&mf, &[&id, &denied], &[]);
}

/// A registry standing in for ECR: TLS on 443 for [`ECR_HOST`] (certificate of a test CA),
/// Basic auth with the password moto's tokens carry, `web:1` pushed (a busybox layer
/// marked `seed`); and a hosts file naming ECR_HOST loopback, for `in_private_hosts`.
fn ecr_registry(
    dir: &std::path::Path,
    seed: &str,
) -> (common::tls::TestCa, Registry, std::path::PathBuf) {
    let ca = common::tls::TestCa::new(dir);
    let srv = ca.issue("ecr", &[ECR_HOST], &["127.0.0.1"], true);
    let reg = Registry::start(RegistryOpts {
        htpasswd: Some(("AWS".into(), ECR_PASSWORD.into())),
        tls: Some((srv.cert.clone(), srv.key.clone())),
        port: Some(443),
        ..Default::default()
    });
    push_image(
        &reg,
        dir,
        "web:1",
        &[Layer::new(Compression::Gzip, busybox_all_applets(seed))],
    );
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        format!("127.0.0.1 localhost\n::1 localhost\n127.0.0.1 {ECR_HOST}\n"),
    )
    .unwrap();
    (ca, reg, hosts)
}

/// A task's ECR token is kept for the next task asked as the same identity, as the ECS
/// agent keeps it for the tasks that follow (by role ARN, region, registry and endpoint):
/// GetAuthorizationToken is asked once per role, once for the host's credentials, and
/// again when the kept file does not decode. ECR's API is tests/fixtures/
/// ecr_token_server.py here: moto's tokens expired in 2015, so none would be kept.
#[test]
fn an_ecr_token_is_kept_for_the_next_task_of_the_same_identity() {
    let _lock = lock_port_443();
    let work = tempfile::tempdir().unwrap();
    let (ca, _reg, hosts) = ecr_registry(work.path(), "ecr-kept");
    let moto = Server::moto(work.path());
    let ecr = Server::ecr_tokens(work.path(), ECR_PASSWORD);
    let mut mf = Mf::new();
    pointed_at(&mut mf, &moto);
    mf.set_env("AWS_ENDPOINT_URL_ECR", ecr.url());
    mf.set_env("SSL_CERT_FILE", &ca.cert);
    let def = |role: &str| {
        taskdef("kept", &format!("{ECR_HOST}/web:1"), "")
            .replace("role/exec", role)
            .replace(
                r#""command":["sh","-c","trap 'exit 0' TERM; while true; do sleep 1; done"]"#,
                r#""command":["sh","-c","echo ran"]"#,
            )
    };
    let runs = std::cell::Cell::new(0);
    let run_as = |role: &str, extra: &[&str]| {
        runs.set(runs.get() + 1);
        let td = mf.taskdef("kept", &def(role));
        let mut args = vec!["run-task", "--task-definition", td.as_str()];
        args.extend_from_slice(extra);
        let out = in_private_hosts(&mf, &hosts, &args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("app | ran"),
            "run {} as {role}: {stdout}{}",
            runs.get(),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let kept_dir = mf.root.join("registry-tokens");
    let kept = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(&kept_dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        v.sort();
        v
    };

    // The first task of role/puller asks ECR (as the role's assumed session); the token
    // is kept: one file, 0600, in a 0700 directory of the root.
    run_as("role/puller", &[]);
    assert_eq!(ecr.ecr_token_askers().len(), 1);
    assert_eq!(mode(&kept_dir), 0o700);
    let first = kept();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(mode(&first[0]), 0o600);
    // The next task of the same role does not ask again (its image is checked with the
    // kept token: the registry still answers it).
    run_as("role/puller", &[]);
    assert_eq!(ecr.ecr_token_askers().len(), 1);
    // Another role asks for its own token, kept beside.
    run_as("role/other", &[]);
    assert_eq!(ecr.ecr_token_askers().len(), 2);
    assert_eq!(kept().len(), 2);
    // The host's credentials (`--execution-credentials host`) ask as the host's key, never
    // with a role's token; then theirs is kept too.
    run_as("role/puller", &["--execution-credentials", "host"]);
    let askers = ecr.ecr_token_askers();
    assert_eq!(askers.len(), 3, "{askers:?}");
    assert_eq!(askers[2], "testing");
    assert_ne!(askers[0], "testing");
    run_as("role/puller", &["--execution-credentials", "host"]);
    assert_eq!(ecr.ecr_token_askers().len(), 3);
    assert_eq!(kept().len(), 3);
    // A kept token the registry refuses is thrown away and asked of ECR again, once: the
    // task runs with the new one, which is kept in its place.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&first[0]).unwrap()).unwrap();
    v["password"] = "not-the-password".into();
    std::fs::write(&first[0], serde_json::to_vec(&v).unwrap()).unwrap();
    run_as("role/puller", &[]);
    assert_eq!(ecr.ecr_token_askers().len(), 4);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&first[0]).unwrap()).unwrap();
    assert_eq!(v["password"], ECR_PASSWORD);
    // A kept file that does not decode is not used: said in the supervisor's log,
    // removed, and ECR asked again; the new token is kept in its place.
    std::fs::write(&first[0], b"{\"host\":").unwrap();
    run_as("role/puller", &[]);
    assert_eq!(ecr.ecr_token_askers().len(), 5);
    let warned = std::fs::read_dir(mf.root.join("tasks"))
        .unwrap()
        .flatten()
        .filter_map(|d| std::fs::read_to_string(d.path().join("supervisor.log")).ok())
        .any(|log| log.contains("a kept registry token does not decode"));
    assert!(warned, "no task said that the kept token did not decode");
    let text = std::fs::read_to_string(&first[0]).unwrap();
    assert!(text.contains("\"expiresAt\""), "{text}");
    assert_eq!(mode(&first[0]), 0o600);
    let ids: Vec<String> = mf.json(&["list-tasks", "--desired-status", "STOPPED"])["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), runs.get());
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_no_leaks(&mf, &refs, &[]);
}
