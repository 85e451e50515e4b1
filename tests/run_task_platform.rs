//! Root integration tests of `runtimePlatform`: the architecture a task asks for is the one
//! pulled from an index and run — a foreign one (arm64 on x86_64) through the kernel's
//! binfmt_misc handler from Debian's qemu-user-static — and what cannot run is refused by
//! name before anything of the task exists.
//!
//! Needs what `scripts/test` installs: qemu-user-static registered (scripts/lib.sh
//! `register_binfmt`) and Debian's arm64 busybox-static unpacked under
//! target/release-sysroots/arm64.busybox (`fetch_arm64_busybox`).

use crate::common;

use common::busybox_task_env;
use common::cli::Mf;
use common::image::{Compression, Layer, busybox_entries, busybox_entries_of, busybox_layer};
use common::registry::Registry;
use serde_json::Value;
use std::path::{Path, PathBuf};

const MULTI: &str = "public.ecr.aws/docker/library/busybox:multi";
const AMD64_ONLY: &str = "public.ecr.aws/docker/library/busybox:1.36";

/// Debian's busybox-static for arm64 (scripts/lib.sh `fetch_arm64_busybox`).
fn arm64_busybox() -> Vec<u8> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let p = dir.join("release-sysroots/arm64.busybox/bin/busybox");
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "read {}: {e}: run `. scripts/lib.sh; fetch_arm64_busybox {}` (scripts/test does)",
            p.display(),
            p.parent().unwrap().parent().unwrap().display()
        )
    })
}

/// A registry with `busybox:1.36` (amd64 only) and `busybox:multi` (an index of amd64 and
/// arm64/v8 busybox, each with its own marker), served as public.ecr.aws.
fn env() -> (Mf, Registry, common::image::BuiltIndex) {
    let (mf, reg) = busybox_task_env(busybox_layer(Compression::Gzip, "amd64-only"));
    let work = tempfile::Builder::new()
        .prefix("mf-platform-img-")
        .tempdir()
        .unwrap();
    let arm = arm64_busybox();
    let idx = common::push_index(&reg, work.path(), "docker/library/busybox:multi", |p| {
        let entries = if p.starts_with("linux/arm64") {
            busybox_entries_of(arm.clone(), "arm64-image")
        } else {
            busybox_entries("amd64-image")
        };
        vec![Layer::new(Compression::Gzip, entries)]
    });
    (mf, reg, idx)
}

fn taskdef(mf: &Mf, name: &str, image: &str, platform: &str) -> String {
    mf.taskdef(
        name,
        &format!(
            r#"{{"family":"{name}","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
                "cpu":"256","memory":"512"{platform},
                "containerDefinitions":[{{"name":"app","image":"{image}","essential":true,
                  "command":["sh","-c","uname -m; cat /etc/minifargate-marker; echo"]}}]}}"#
        ),
    )
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stopped_tasks(mf: &Mf) -> Vec<Value> {
    let ids: Vec<String> = mf.json(&["list-tasks", "--desired-status", "STOPPED"])["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let mut args = vec!["describe-tasks", "--tasks"];
    args.extend(ids.iter().map(String::as_str));
    mf.json(&args)["tasks"].as_array().unwrap().clone()
}

#[test]
fn arm64_task_runs_under_qemu_and_x86_64_natively() {
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "this test is for x86_64 hosts"
    );
    let (mf, _reg, idx) = env();
    let arm = taskdef(
        &mf,
        "arm",
        MULTI,
        r#","runtimePlatform":{"cpuArchitecture":"ARM64","operatingSystemFamily":"LINUX"}"#,
    );
    let out = mf.run(&["run-task", "--task-definition", &arm]);
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    // Seen from inside the container: the kernel runs an aarch64 userland (via qemu), from
    // the index's arm64 image.
    assert_eq!(stdout(&out), "app | aarch64\napp | arm64-image\n");

    let x86 = taskdef(
        &mf,
        "x86",
        MULTI,
        r#","runtimePlatform":{"cpuArchitecture":"X86_64"}"#,
    );
    let out = mf.run(&["run-task", "--task-definition", &x86]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "app | x86_64\napp | amd64-image\n");
    // The same reference cached for the other architecture is not taken for this one.
    let out = mf.run(&["run-task", "--task-definition", &arm]);
    assert_eq!(stdout(&out), "app | aarch64\napp | arm64-image\n");

    let tasks = stopped_tasks(&mf);
    assert_eq!(tasks.len(), 3);
    let arm64_manifest = &idx.images[1].manifest_digest;
    let amd64_manifest = &idx.images[0].manifest_digest;
    let digests: Vec<&str> = tasks
        .iter()
        .map(|t| t["containers"][0]["imageDigest"].as_str().unwrap())
        .collect();
    // Newest first.
    assert_eq!(
        digests,
        [
            arm64_manifest.as_str(),
            amd64_manifest.as_str(),
            arm64_manifest.as_str()
        ]
    );
    let ids: Vec<String> = tasks
        .iter()
        .map(|t| {
            t["taskArn"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    common::leaks::assert_no_leaks(&mf, &ids, &[]);
}

#[test]
fn an_image_of_another_architecture_fails_the_task_by_name() {
    let (mf, _reg, _idx) = env();
    // busybox:1.36 is a single amd64 image: no arm64 in it to pick.
    let td = taskdef(
        &mf,
        "armonly",
        AMD64_ONLY,
        r#","runtimePlatform":{"cpuArchitecture":"ARM64"}"#,
    );
    let out = mf.run(&["run-task", "--task-definition", &td]);
    assert!(!out.status.success());
    let tasks = stopped_tasks(&mf);
    assert_eq!(tasks.len(), 1);
    let t = &tasks[0];
    assert_eq!(t["stopCode"], "TaskFailedToStart");
    let reason = t["containers"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("CannotPullContainerError")
            && reason.contains("busybox:1.36 is a linux/amd64 image")
            && reason.contains("linux/arm64"),
        "{reason}"
    );
    let id = t["taskArn"].as_str().unwrap().rsplit('/').next().unwrap();
    common::leaks::assert_no_leaks(&mf, &[id], &[]);
}

#[test]
fn no_handler_or_windows_is_refused_before_anything_starts() {
    let (mut mf, _reg, _idx) = env();
    // A host without a handler: binfmt_misc seen through an empty directory.
    let empty = tempfile::tempdir().unwrap();
    mf.set_env("MINIFARGATE_BINFMT_MISC", empty.path());
    let arm = taskdef(
        &mf,
        "arm",
        MULTI,
        r#","runtimePlatform":{"cpuArchitecture":"ARM64"}"#,
    );
    let err = mf.fail(&["run-task", "--task-definition", &arm]);
    assert!(
        err.contains("runtimePlatform.cpuArchitecture ARM64")
            && err.contains("linux/arm64")
            && err.contains(&format!("app: {MULTI}"))
            && err.contains("apt install qemu-user-static")
            && err.contains("binfmt_misc is not mounted"),
        "{err}"
    );

    // Registering a Windows task definition is allowed (as on ECS); running it here is not.
    let win = mf.taskdef(
        "win",
        &format!(
            r#"{{"family":"win","requiresCompatibilities":["FARGATE"],"networkMode":"awsvpc",
                "cpu":"1024","memory":"2048",
                "runtimePlatform":{{"operatingSystemFamily":"WINDOWS_SERVER_2022_CORE",
                                   "cpuArchitecture":"X86_64"}},
                "containerDefinitions":[{{"name":"app","image":"{MULTI}"}}]}}"#
        ),
    );
    mf.json(&["register-task-definition", "--cli-input-json", &win]);
    let err = mf.fail(&["run-task", "--task-definition", "win"]);
    assert!(
        err.contains("ClientException")
            && err.contains("operatingSystemFamily WINDOWS_SERVER_2022_CORE")
            && err.contains("Linux containers only"),
        "{err}"
    );

    // Nothing was made: no task, no network, no mount.
    let listed = mf.json(&["list-tasks", "--desired-status", "STOPPED"]);
    assert_eq!(listed["taskArns"], serde_json::json!([]), "{listed:#}");
    let listed = mf.json(&["list-tasks"]);
    assert_eq!(listed["taskArns"], serde_json::json!([]), "{listed:#}");
    common::leaks::assert_no_leaks(&mf, &[], &[]);
}
