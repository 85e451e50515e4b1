//! Root integration tests of the default pull policy (`--pull default`, the ECS agent's
//! `ECS_IMAGE_PULL_BEHAVIOR=default`): a cached image is run only after the registry,
//! asked with the task's own credentials, still serves it; a private image one task pulled
//! is refused to a task without credentials for it (CannotPullContainerError, 401); a moved
//! tag pulls the new image; a registry that cannot be reached runs the cached image with a
//! task warning naming why. `--pull missing` (now `prefer-cached`) still never asks.

use crate::common;

use common::cli::{Mf, run_settled as run, stop_and_wait as stop};
use common::image::{Compression, Entry, Layer, Layout, busybox_all_applets};
use common::leaks::assert_no_leaks;
use common::push_image;
use common::registry::{Registry, RegistryOpts};
use common::services::{Server, aws};
use serde_json::Value;

const ROLE: &str = "arn:aws:iam::123456789012:role/exec";

/// A task of one long-running container of `image`; `creds` is the ARN of the
/// Secrets Manager secret for its `repositoryCredentials`, if any.
fn taskdef(family: &str, image: &str, creds: Option<&str>) -> String {
    let auth = creds
        .map(|a| format!(r#","repositoryCredentials":{{"credentialsParameter":"{a}"}}"#))
        .unwrap_or_default();
    format!(
        r#"{{"family":"{family}","networkMode":"awsvpc","cpu":"256","memory":"512",
            "executionRoleArn":"{ROLE}",
            "containerDefinitions":[{{"name":"app","image":"{image}","stopTimeout":2{auth},
              "command":["sh","-c","trap 'exit 0' TERM; while true; do sleep 1; done"]}}]}}"#
    )
}

fn warnings(t: &Value) -> Vec<String> {
    t["minifargateWarnings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| w.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_cached_private_image_runs_only_for_a_task_with_its_credentials() {
    let work = tempfile::tempdir().unwrap();
    let moto = Server::moto(work.path());
    let mut reg = Registry::start(RegistryOpts {
        htpasswd: Some(("alice".into(), "s3cret-pw".into())),
        ..Default::default()
    });
    let img = push_image(
        &reg,
        work.path(),
        "private/app:1",
        &[Layer::new(
            Compression::Gzip,
            busybox_all_applets("pull-policy"),
        )],
    );
    let image = format!("{}/private/app:1", reg.host());
    // The host has no credentials for this registry (its DOCKER_CONFIG is empty): only a
    // task's repositoryCredentials open it.
    let mut mf = Mf::new();
    mf.set_env("AWS_ENDPOINT_URL", moto.url());
    mf.set_env("AWS_ACCESS_KEY_ID", "testing");
    mf.set_env("AWS_SECRET_ACCESS_KEY", "testing");
    mf.set_env("AWS_REGION", "us-east-1");
    let secret = aws(
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
    let creds = secret["ARN"].as_str().unwrap();

    // A task with the credentials pulls the image into the cache and runs it.
    let (with, t) = run(&mf, "with", &taskdef("with", &image, Some(creds)), &[]);
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    stop(&mf, &with);
    assert!(mf.images().iter().any(|i| i["reference"] == image.as_str()));
    let layers = mf.layer_dirs().len();

    // A task without them is refused the cached image, as on Fargate.
    let (without, t) = run(&mf, "without", &taskdef("without", &image, None), &[]);
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    assert_eq!(t["stopCode"], "TaskFailedToStart", "{t:#}");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.starts_with("CannotPullContainerError: ")
            && reason.contains(&format!("401 Unauthorized from {}", reg.host()))
            && reason.ends_with("or give the container repositoryCredentials"),
        "{reason}"
    );
    assert_eq!(
        t["containers"][0]["reason"]
            .as_str()
            .map(|r| r.contains("401 Unauthorized")),
        Some(true),
        "{t:#}"
    );

    // A task with them runs it again from the cache: the registry is asked for the
    // manifest only. (Its layer blob is moved away meanwhile: fetching it would fail.)
    let blob = reg.blob_data_path(&img.layers[0].digest);
    let away = blob.with_extension("away");
    std::fs::rename(&blob, &away).unwrap();
    let (again, t) = run(&mf, "again", &taskdef("again", &image, Some(creds)), &[]);
    std::fs::rename(&away, &blob).unwrap();
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    assert!(warnings(&t).is_empty(), "{t:#}");
    assert_eq!(mf.layer_dirs().len(), layers);
    stop(&mf, &again);

    // The old spelling of prefer-cached never asks: the task without credentials runs
    // the cached image (what `default` exists to prevent).
    let (cached, t) = run(
        &mf,
        "cached",
        &taskdef("cached", &image, None),
        &["--pull", "missing"],
    );
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    stop(&mf, &cached);

    // The tag moves: the next task runs the new image (only its new layer is fetched).
    push_image(
        &reg,
        work.path(),
        "private/app:1",
        &[
            Layer::new(Compression::Gzip, busybox_all_applets("pull-policy")),
            Layer::new(Compression::Gzip, vec![Entry::file("version.txt", "two\n")]),
        ],
    );
    let (moved, t) = run(&mf, "moved", &taskdef("moved", &image, Some(creds)), &[]);
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    let out = mf.run(&["exec", &moved, "--", "cat", "/version.txt"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "two\n", "{out:?}");
    assert_eq!(mf.layer_dirs().len(), layers + 1);
    stop(&mf, &moved);

    // The registry is gone: the cached image runs, and the task says why it was not
    // checked, naming the registry.
    reg.kill();
    let (offline, t) = run(
        &mf,
        "offline",
        &taskdef("offline", &image, Some(creds)),
        &[],
    );
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    let w = warnings(&t);
    assert!(
        w.iter()
            .any(|w| w.starts_with("containerDefinitions[0].image ")
                && w.contains("the registry could not be reached")
                && w.contains(&format!("failed to reach registry {}", reg.host()))),
        "{w:#?}"
    );
    stop(&mf, &offline);
    assert_no_leaks(
        &mf,
        &[&with, &without, &again, &cached, &moved, &offline],
        &[],
    );
}

/// A task of one long-running container of `image`, with no execution role.
fn plain_taskdef(family: &str, image: &str) -> String {
    format!(
        r#"{{"family":"{family}","networkMode":"awsvpc","cpu":"256","memory":"512",
            "containerDefinitions":[{{"name":"app","image":"{image}","stopTimeout":2,
              "command":["sh","-c","trap 'exit 0' TERM; while true; do sleep 1; done"]}}]}}"#
    )
}

#[test]
fn a_loaded_image_runs_when_its_registry_is_unreachable_or_lacks_it() {
    let mf = Mf::new();
    let layout = mf.dir.path().join("layout");
    let mut l = Layout::new(&layout);
    let img = l.add_image(
        "linux/amd64",
        &[Layer::new(Compression::Gzip, busybox_all_applets("loaded"))],
    );
    l.tag_image("t", &img);
    let load = |name: &str| {
        mf.json(&[
            "load",
            "-i",
            layout.to_str().unwrap(),
            "--tag",
            name,
            "--format",
            "json",
        ])
    };

    // Air-gapped: nothing listens where the image's registry would be.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let offline = format!("127.0.0.1:{port}/air/app:1");
    load(&offline);
    let (a, t) = run(&mf, "air", &plain_taskdef("air", &offline), &[]);
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    let w = warnings(&t);
    assert!(
        w.iter()
            .any(|w| w.contains("the registry could not be reached")
                && w.contains(&format!("failed to reach registry 127.0.0.1:{port}"))),
        "{w:#?}"
    );
    stop(&mf, &a);

    // A registry that answers but does not have it (404): the loaded image still runs.
    let reg = Registry::start(RegistryOpts::default());
    let absent = format!("{}/air/absent:1", reg.host());
    load(&absent);
    let (b, t) = run(&mf, "absent", &plain_taskdef("absent", &absent), &[]);
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    let w = warnings(&t);
    assert!(
        w.iter().any(|w| w.contains("the registry did not serve it")
            && w.contains("minifargate load")
            && w.contains("not found")),
        "{w:#?}"
    );
    stop(&mf, &b);
    assert_no_leaks(&mf, &[&a, &b], &[]);
}
