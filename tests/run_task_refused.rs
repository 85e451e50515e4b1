//! A refused run-task leaves nothing on the box at the moment it returns (issue 59): the
//! supervisor started ahead of the task made the task's cgroups and a network namespace
//! while the CLI checked the definition; the CLI answers only once that supervisor has
//! removed them and exited. It compares the host's cgroup directories before and after,
//! so it must run alone: alone in its test binary, and marked in .config/nextest.toml to
//! run with no other test at once (docs/testing.md, "Tests that run alone").

use crate::common;

use common::busybox_task_env;
use common::image::{Compression, busybox_layer};
use std::collections::BTreeSet;

const BUSYBOX: &str = "public.ecr.aws/docker/library/busybox:1.36";

/// Every task cgroup directory under `minifargate/` in every hierarchy (v1 controllers and
/// v2), as `<hierarchy>/<task id>`.
fn task_cgroup_dirs() -> BTreeSet<String> {
    let mut dirs = BTreeSet::new();
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let Ok(tasks) = std::fs::read_dir(h.path().join("minifargate")) else {
            continue;
        };
        for t in tasks.flatten() {
            if t.path().is_dir() {
                dirs.insert(format!(
                    "{}/{}",
                    h.file_name().to_string_lossy(),
                    t.file_name().to_string_lossy()
                ));
            }
        }
    }
    dirs
}

#[test]
fn a_refused_run_task_returns_after_what_was_made_ahead_is_gone() {
    let (mf, _reg) = busybox_task_env(busybox_layer(Compression::Gzip, "refused"));
    // Refused after the definition was read (the EFS volume needs --volume-map), i.e.
    // after the supervisor started ahead was told the task's id and made its cgroups.
    let td = mf.taskdef(
        "efs",
        &format!(
            r#"{{"family":"efs","networkMode":"awsvpc","cpu":"256","memory":"512",
            "volumes":[{{"name":"shared-fs","efsVolumeConfiguration":{{"fileSystemId":"fs-12345678"}}}}],
            "containerDefinitions":[
              {{"name":"app","image":"{BUSYBOX}","essential":true,
                "mountPoints":[{{"sourceVolume":"shared-fs","containerPath":"/efs"}}],
                "command":["true"]}},
              {{"name":"side","image":"{BUSYBOX}","essential":false,"command":["true"]}}]}}"#
        ),
    );
    // A first task run to the end: the image is cached and the store exists, so the
    // refused launches below take the full path ahead (store opened, images checked).
    let ok = mf.taskdef(
        "ok",
        &format!(
            r#"{{"family":"ok","networkMode":"awsvpc","cpu":"256","memory":"512",
            "containerDefinitions":[{{"name":"app","image":"{BUSYBOX}","command":["true"]}}]}}"#
        ),
    );
    let out = mf.run(&["run-task", "--task-definition", &ok]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::leaks::wait_for("the first task's supervisor to exit", || {
        common::leaks::supervisors_of(&mf.root).is_empty()
    });
    let before = task_cgroup_dirs();
    for i in 0..50 {
        let out = mf.run(&["run-task", "--task-definition", &td]);
        // Checked first, before anything else can give the supervisor time.
        let cgroups: Vec<String> = task_cgroup_dirs().difference(&before).cloned().collect();
        let supervisors = common::leaks::supervisors_of(&mf.root);
        let mounts = common::leaks::task_mount_lines(&mf);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "run {i}: the EFS task was not refused"
        );
        assert!(
            err.contains("--volume-map shared-fs=/local/dir"),
            "run {i}: {err}"
        );
        assert!(
            cgroups.is_empty(),
            "run {i}: cgroups left when run-task returned: {cgroups:?}"
        );
        assert!(
            supervisors.is_empty(),
            "run {i}: supervisors of this root still running when run-task returned: \
             {supervisors:?}"
        );
        assert!(
            mounts.is_empty(),
            "run {i}: mounts left when run-task returned: {mounts:#?}"
        );
    }
    let pins: Vec<_> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("mfg-"))
                .collect()
        })
        .unwrap_or_default();
    let listed = mf.json(&["list-tasks", "--desired-status", "STOPPED"]);
    assert_eq!(
        listed["taskArns"].as_array().unwrap().len(),
        1,
        "only the first task was ever written: {listed}"
    );
    for p in pins {
        let id = p.trim_start_matches("mfg-");
        assert!(
            !listed.to_string().contains(id),
            "netns pin {p} of this root's task left"
        );
    }
}
