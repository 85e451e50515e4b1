//! A box's data plane outlives its agent (issue 73; docs/cluster.md "The data plane
//! outlives the agent", "A wedged agent"): a task on one box resolving and calling a
//! service on the other by its Cloud Map name and through a Service Connect alias sees
//! no failure while either box's agent is restarted; a wedged agent (live process,
//! blocked work loop) lets its lease lapse and its service task is replaced on the
//! other box. Real etcd, real agents (boxes as network namespaces for the first) and
//! serve, driven with the AWS CLI.

use crate::cluster_network::*;
use crate::cluster_network_services::cloud_map_service;
use crate::common;

use common::cluster::{Agent, SLEEPER, service_tasks, until_connected};
use common::etcd::Etcd;
use common::netbox::{Lan, NetBox};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// Asks `web.dp.local:8080` (a Cloud Map name) and `b.sc:9000` (a Service Connect alias)
/// in turn, printing `DNS OK <answer>` / `DNS FAIL …` and `SC OK …` / `SC FAIL …`.
fn caller() -> Value {
    let script = "trap 'exit 0' TERM; while true; do \
        d=$(busybox timeout 3 busybox wget -q -O - http://web.dp.local:8080/ 2>&1) && echo \"DNS OK $d\" || echo \"DNS FAIL $d\"; \
        s=$(busybox timeout 3 busybox wget -q -O - http://b.sc:9000/ 2>&1) && echo \"SC OK $s\" || echo \"SC FAIL $s\"; \
        sleep 0.2; done";
    looping_client("netbox-dpcaller", script)
}

/// The caller's answers so far: (successes of DNS, of SC, every failure line).
fn answers(b: &common::netbox::NetBox, id: &str, skip: usize) -> (usize, usize, Vec<String>) {
    let text = box_logs(b, id);
    let lines: Vec<&str> = text.lines().skip(skip).map(str::trim).collect();
    let ok = |p: &str| lines.iter().filter(|l| l.starts_with(p)).count();
    let failed = lines
        .iter()
        .filter(|l| l.contains(" FAIL"))
        .map(|l| l.to_string())
        .collect();
    (ok("DNS OK 10."), ok("SC OK 10."), failed)
}

#[test]
fn a_task_keeps_resolving_and_calling_the_other_box_while_each_agent_restarts() {
    let mut lan = Lan::new();
    let etcd = Etcd::start_for(&[&lan.gateway.to_string()]);
    let (api, mut boxes) = cluster(&mut lan, &etcd, &[], 2, 5, false);
    let registry = cloud_map_service(&api, "dp.local", "web")["Service"]["Arn"]
        .as_str()
        .unwrap()
        .to_string();
    // On box 1: `web` (its Cloud Map name web.dp.local) and `b` (the alias b.sc:9000);
    // on box 0: the caller.
    register(&api, "lbweb.json", &addressed_web());
    let mut scb = addressed_web();
    scb["family"] = json!("netbox-dpscb");
    scb["containerDefinitions"][0]["portMappings"] =
        json!([{"containerPort": 8080, "name": "web"}]);
    register(&api, "dpscb.json", &scb);
    register(&api, "dpcaller.json", &caller());
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    let on = |i: usize| format!("type=memberOf,expression=attribute:box=={i}");
    let sc_server = r#"{"enabled":true,"namespace":"dp.local","services":[{"portName":"web","discoveryName":"b","clientAliases":[{"port":9000,"dnsName":"b.sc"}]}]}"#;
    let sc_client = r#"{"enabled":true,"namespace":"dp.local"}"#;
    let services: [(&str, &str, String, Vec<String>); 3] = [
        (
            "web",
            "netbox-lbweb",
            on(1),
            vec![
                "--service-registries".into(),
                format!("registryArn={registry}"),
            ],
        ),
        (
            "b",
            "netbox-dpscb",
            on(1),
            vec!["--service-connect-configuration".into(), sc_server.into()],
        ),
        (
            "a",
            "netbox-dpcaller",
            on(0),
            vec!["--service-connect-configuration".into(), sc_client.into()],
        ),
    ];
    for (name, family, placement, more) in &services {
        let mut args = vec![
            "create-service",
            "--service-name",
            name,
            "--task-definition",
            family,
            "--desired-count",
            "1",
            "--launch-type",
            "EC2",
            "--placement-constraints",
            placement,
        ];
        args.extend(more.iter().map(String::as_str));
        api.aws_json(&args);
    }
    let a_task = api.wait_for(120, "the caller RUNNING", || {
        service_tasks(&api, "a").into_iter().next()
    });
    assert_eq!(a_task.1, boxes[0].arn());
    let a_id = id_of(&a_task.0);
    // Both ways answered before anything restarts; failures are counted from there.
    let mut shown = String::new();
    let mark = api.wait_for(120, "web.dp.local and b.sc answered from box 0", || {
        let text = box_logs(&boxes[0], &a_id);
        let n = text.lines().count();
        let tail: Vec<&str> = text.lines().skip(n.saturating_sub(6)).collect();
        let tail = tail.join("\n");
        if tail != shown {
            eprintln!("the caller's last lines:\n{tail}");
            shown = tail;
        }
        let (dns, sc, _) = answers(&boxes[0], &a_id, n.saturating_sub(6));
        (dns >= 2 && sc >= 2).then_some(n)
    });
    let more = |boxes: &[common::netbox::NetBox], what: &str| {
        let (dns0, sc0, _) = answers(&boxes[0], &a_id, mark);
        api.wait_for(60, what, || {
            let (dns, sc, _) = answers(&boxes[0], &a_id, mark);
            (dns >= dns0 + 3 && sc >= sc0 + 3).then_some(())
        });
    };
    for i in [0, 1] {
        let arn = boxes[i].arn();
        let st = boxes[i].signal("-TERM").unwrap();
        assert!(st.success(), "{st:?}");
        more(&boxes, &format!("answers while box {i}'s agent is away"));
        boxes[i].start_agent(&[]);
        until_connected(&api, &arn, true, Duration::from_secs(60));
        more(&boxes, &format!("answers after box {i}'s agent is back"));
        // The new agent adopted the data plane rather than making another.
        let log = std::fs::read_to_string(boxes[i].log()).unwrap();
        assert_eq!(
            log.matches("adopted the box's data plane").count(),
            1,
            "box {i}"
        );
    }
    let (dns, sc, failed) = answers(&boxes[0], &a_id, mark);
    eprintln!("across both restarts: {dns} DNS answers, {sc} Service Connect answers");
    assert_eq!(
        failed,
        Vec::<String>::new(),
        "failed calls across the restarts"
    );

    let ids: Vec<String> = services
        .iter()
        .flat_map(|(n, ..)| service_tasks(&api, n))
        .map(|(t, _)| id_of(&t))
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    for (name, ..) in &services {
        api.aws_json(&["delete-service", "--service", name, "--force"]);
    }
    api.wait_for(60, "no service task RUNNING", || {
        services
            .iter()
            .all(|(n, ..)| service_tasks(&api, n).is_empty())
            .then_some(())
    });
    // `system reset` on box 1: refused while its agent runs, nothing changed; once the
    // agent stopped, it takes the data plane and the routes to the other box with the rest.
    let lock = boxes[1].mf.run_root.join("agent/data-plane.lock");
    let data_plane: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&lock).unwrap()).unwrap();
    let pid = data_plane["pid"].as_i64().unwrap();
    let reset = |b: &NetBox| {
        b.cmd()
            .args(["system", "reset", "--force"])
            .output()
            .unwrap()
    };
    let refused = reset(&boxes[1]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("an agent runs on this box"),
        "{refused:?}"
    );
    assert!(Path::new(&format!("/proc/{pid}")).exists() && lock.exists());
    assert!(!boxes[1].peer_routes().is_empty());
    boxes[1].signal("-TERM");
    let out = reset(&boxes[1]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stopped the box's data plane"),
        "{out:?}"
    );
    common::leaks::wait_for("box 1's data plane to exit", || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    assert_eq!(boxes[1].peer_routes(), Vec::<String>::new());
    assert!(!boxes[1].mf.run_root.exists());
    stop_for_good_and_check_clean(&mut boxes[..1], &ids);
}

#[test]
fn a_wedged_agent_is_seen_disconnected_and_its_service_task_replaced_while_it_lives() {
    let etcd = Etcd::start();
    let api = common::cluster::serve_with(&etcd, &["--lost-instance-after", "1"]);
    let ttl = 2;
    let mut mf = common::cli::Mf::new();
    mf.mirror_config("public.ecr.aws", &api.registry().host(), true);
    let wedge = mf.dir.path().join("wedge");
    mf.set_env("MINIFARGATE_TEST_WEDGE_FILE", &wedge);
    let mut a = Agent::start_in(mf, &etcd, ttl, &["box=a"], &["--work-stall-limit", "3"]);
    api.wait_for(20, "box a listed", || {
        (common::cluster::list(&api, &[]).len() == 1).then_some(())
    });
    let arn_a = a.arn();
    common::cluster::register(&api, "sleeper.json", SLEEPER);
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "cluster-sleeper",
        "--desired-count",
        "1",
        "--launch-type",
        "EC2",
    ]);
    let first = api.wait_for(90, "the service's task RUNNING on box a", || {
        service_tasks(&api, "web").into_iter().next()
    });
    assert_eq!(first.1, arn_a);
    let b = Agent::start_for(&etcd, &api, ttl, &["box=b"]);
    api.wait_for(20, "box b listed", || {
        (common::cluster::list(&api, &[]).len() == 2).then_some(())
    });
    let arn_b = b.arn();

    // Box a's work loop blocks; its process lives on.
    std::fs::write(&wedge, "").unwrap();
    until_connected(&api, &arn_a, false, Duration::from_secs(60));
    let replaced = api.wait_for(90, "the service's task replaced on box b", || {
        service_tasks(&api, "web")
            .into_iter()
            .find(|(_, i)| *i == arn_b)
    });
    assert_ne!(replaced.0, first.0);
    let child = a.child.as_mut().unwrap();
    assert!(
        child.try_wait().unwrap().is_none(),
        "the wedged agent is alive"
    );
    assert!(
        a.log_text()
            .contains("no progress for longer than --work-stall-limit"),
        "{}",
        a.log_text()
    );

    // Unwedged: box a connects again and stops the task that was replaced.
    std::fs::remove_file(&wedge).unwrap();
    until_connected(&api, &arn_a, true, Duration::from_secs(60));
    let id = first.0.rsplit('/').next().unwrap().to_string();
    api.wait_for(60, "the replaced task STOPPED on box a", || {
        let local = a.mf.json(&["describe-tasks", "--tasks", &id]);
        (local["tasks"][0]["lastStatus"] == "STOPPED").then_some(())
    });
    api.aws_json(&["delete-service", "--service", "web", "--force"]);
}
