//! Root integration test of `ephemeralStorage`: with `MINIFARGATE_EPHEMERAL_STORAGE=enforce`
//! a task's writable layer and its volumes share one filesystem of sizeInGiB, and writing
//! past it fails with ENOSPC inside the container; teardown leaves no loop device or
//! mount. Without it the size is reported as not applied. describe-tasks shows the size.

use crate::common;

use common::busybox_task_env;
use common::image::{Compression, busybox_layer};
use serde_json::Value;

fn stopped(mf: &common::cli::Mf) -> Vec<Value> {
    let ids: Vec<String> = mf.json(&["list-tasks", "--desired-status", "STOPPED"])["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let mut args = vec!["describe-tasks", "--tasks"];
    args.extend(ids.iter().map(String::as_str));
    mf.json(&args)["tasks"].as_array().unwrap().clone()
}

/// Loop devices whose backing file is under `dir`.
fn loops_under(dir: &std::path::Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        let f = e.path().join("loop/backing_file");
        if let Ok(b) = std::fs::read_to_string(&f)
            && b.trim().starts_with(&*dir.to_string_lossy())
        {
            v.push(format!("{}: {}", e.file_name().to_string_lossy(), b.trim()));
        }
    }
    v
}

#[test]
fn writing_past_the_tasks_ephemeral_storage_fails_with_enospc() {
    let (mut mf, _reg) = busybox_task_env(busybox_layer(Compression::Gzip, "ephemeral"));
    let td = mf.taskdef(
        "eph",
        r#"{"family":"eph","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
            "cpu":"256","memory":"512","ephemeralStorage":{"sizeInGiB":21},
            "volumes":[{"name":"data"}],
            "containerDefinitions":[{"name":"app","essential":true,
              "image":"public.ecr.aws/docker/library/busybox:1.36",
              "mountPoints":[{"sourceVolume":"data","containerPath":"/data"}],
              "command":["sh","-c",
                "bb=/bin/busybox; set -- $($bb df -k / | $bb tail -n 1); echo total=$2; set -- $($bb df -k /data | $bb tail -n 1); echo data_total=$2; $bb fallocate -l 8G /data/v && echo volume-ok; avail=$($bb df -k / | $bb tail -n 1 | $bb awk '{print $4}'); $bb fallocate -l $(( (avail - 1024) * 1024 )) /big && echo filled; $bb dd if=/dev/zero of=/more bs=1M count=8 2>&1 | $bb grep -o 'No space left on device' | $bb head -n 1"]}]}"#,
    );

    // Not enforced (the default): the task runs, the size is reported as not applied.
    let hello = mf.taskdef(
        "small",
        r#"{"family":"small","networkMode":"awsvpc","cpu":"256","memory":"512",
            "ephemeralStorage":{"sizeInGiB":30},
            "containerDefinitions":[{"name":"app","essential":true,
              "image":"public.ecr.aws/docker/library/busybox:1.36","command":["true"]}]}"#,
    );
    let out = mf.run(&["run-task", "--task-definition", &hello]);
    assert!(out.status.success());
    let t = &stopped(&mf)[0];
    assert_eq!(t["ephemeralStorage"]["sizeInGiB"], 30);
    let warnings = t["minifargateWarnings"].to_string();
    assert!(
        warnings.contains("ephemeralStorage.sizeInGiB 30: not applied here"),
        "{t:#}"
    );

    mf.set_env("MINIFARGATE_EPHEMERAL_STORAGE", "enforce");
    let out = mf.run(&["run-task", "--task-definition", &td]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    let total = |key: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("app | {key}=")))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
            .parse()
            .unwrap()
    };
    // The container's root and its volume are one 21 GiB filesystem (less ext4's own).
    let gib = 1024 * 1024;
    assert!((20 * gib..=21 * gib).contains(&total("total")), "{stdout}");
    assert_eq!(total("total"), total("data_total"));
    assert!(stdout.contains("app | volume-ok\n"), "{stdout}");
    assert!(stdout.contains("app | filled\n"), "{stdout}");
    assert!(
        stdout.contains("app | No space left on device\n"),
        "{stdout}"
    );

    let tasks = stopped(&mf);
    let t = tasks
        .iter()
        .find(|t| t["taskDefinitionArn"].as_str().unwrap().contains("/eph:"))
        .unwrap();
    assert_eq!(t["ephemeralStorage"]["sizeInGiB"], 21);
    assert!(t.get("minifargateWarnings").is_none(), "{t:#}");
    let ids: Vec<&str> = tasks
        .iter()
        .map(|t| t["taskArn"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    common::leaks::assert_no_leaks(&mf, &ids, &[]);
    assert_eq!(loops_under(&mf.root), Vec::<String>::new());
    let id = t["taskArn"].as_str().unwrap().rsplit('/').next().unwrap();
    let task_dir = mf.root.join("tasks").join(id);
    common::leaks::wait_for("the ephemeral storage file to go", || {
        !task_dir.join("ephemeral.img").exists()
    });
}
