//! Cluster mode across boxes that are network namespaces (issue 38, "How to test it on
//! one machine"; tests/common/netbox.rs): each box is a namespace on a test bridge with
//! its own agent, state and run roots, task bridge, task subnet and nftables table; etcd
//! and the registry are relayed onto that bridge; `serve --cluster` runs on the host and
//! the real AWS CLI drives it. What is checked is what a user would: a task on one box
//! reaches a task on the other at its own address and sees the other's address (no NAT);
//! a box whose cable is pulled, or whose agent is frozen, is lost, its service tasks are
//! replaced on the other box, and once back it stops what was replaced; a load balancer
//! reaches service tasks on both boxes and moves with the leader; nothing is left on any
//! box. tests/cluster_network_services.rs goes on with the same harness (split to keep
//! each file within scripts/test's per-file budget).

use crate::common;

use common::api::Api;
use common::cluster::{connected, service_tasks};
use common::elb::elbv2;
use common::etcd::Etcd;
use common::image::{Compression, busybox_layer};
use common::leaks::{mounts_under, task_cgroups, task_processes};
use common::netbox::{Lan, NetBox};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// serve on the host, its etcd and registry relayed onto the Lan, and `n` boxes whose
/// agents (leases of `ttl` s, attribute `box=<i>`), started at once, are listed by the
/// API. Box 0 leases its task subnet (a /28 of the Lan's range); the others keep their
/// own /26 (MINIFARGATE_SUBNET) when `pinned`, else lease one too.
pub(crate) fn cluster(
    lan: &mut Lan,
    etcd: &Etcd,
    serve_args: &[&str],
    n: usize,
    ttl: u64,
    pinned: bool,
) -> (Api, Vec<NetBox>) {
    cluster_env(lan, etcd, serve_args, &[], n, ttl, pinned)
}

/// [`cluster`], serve with the variables `env`.
pub(crate) fn cluster_env(
    lan: &mut Lan,
    etcd: &Etcd,
    serve_args: &[&str],
    env: &[(&str, &str)],
    n: usize,
    ttl: u64,
    pinned: bool,
) -> (Api, Vec<NetBox>) {
    let endpoint = etcd.endpoint();
    let serve_tls = etcd.serve_args();
    let mut args = vec!["--cluster", &endpoint];
    args.extend(serve_tls.iter().map(String::as_str));
    args.extend(serve_args);
    let api = Api::start_env(busybox_layer(Compression::Gzip, "netbox"), &args, env);
    let etcd_on_lan = lan.forward_url(&endpoint);
    let registry_on_lan = lan.forward(api.registry().host().parse().unwrap());
    // The boxes route only claims inside their task range (docs/cluster.md "Security"):
    // with pinned boxes, the range that holds every test's /26.
    let range = if pinned {
        PINNED_RANGE.to_string()
    } else {
        lan.task_range()
    };
    let mut boxes = Vec::new();
    for i in 0..n {
        let mut b = NetBox::new(lan);
        b.pinned = pinned && i > 0;
        b.mf.mirror_config("public.ecr.aws", &registry_on_lan.to_string(), true);
        let mut args: Vec<String> = etcd.agent_args();
        args.extend(
            [
                "--cluster",
                &etcd_on_lan,
                "--lease-ttl",
                &ttl.to_string(),
                "--attribute",
                &format!("box={i}"),
                "--task-range",
                &range,
                "--box-prefix",
                "28",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        b.start_agent(&args);
        boxes.push(b);
    }
    api.wait_for(30, "every box listed", || {
        (api.instances_listed(None).len() == n).then_some(())
    });
    (api, boxes)
}

/// Where every test's own /26 lies (`common::cli`): the task range of a cluster whose
/// boxes keep theirs (MINIFARGATE_SUBNET).
pub(crate) const PINNED_RANGE: &str = "10.97.0.0/16";

/// The task subnet box `b` holds, as its agent logged it.
pub(crate) fn task_subnet(b: &NetBox) -> String {
    common::util::wait_until("the box's task subnet", Duration::from_secs(20), || {
        let log = std::fs::read_to_string(b.log()).ok()?;
        let line = log.lines().find(|l| l.contains("task_subnet="))?;
        let s = line.split("task_subnet=").nth(1)?.split(' ').next()?;
        Some(s.to_string())
    })
}

pub(crate) fn register(api: &Api, name: &str, def: &Value) {
    let f = api.file(name, &def.to_string());
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
}

/// A web server answering `/cgi-bin/who` with `peer=<the client's address as it sees it>`.
pub(crate) fn web() -> Value {
    let script = "busybox mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho peer=$REMOTE_ADDR\\n' > /www/cgi-bin/who && busybox chmod +x /www/cgi-bin/who && exec busybox httpd -f -p 8080 -h /www";
    json!({
        "family": "netbox-web",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["EC2"],
        "cpu": "128",
        "memory": "64",
        "containerDefinitions": [{
            "name": "main",
            "image": "public.ecr.aws/docker/library/busybox:1.36",
            "command": ["sh", "-c", script],
            "stopTimeout": 2,
            "essential": true
        }]
    })
}

/// Asks `http://$TARGET:8080/cgi-bin/who` (busybox's `wget -T` crashes: `timeout`
/// bounds each try); exits 0 when the server saw this task's own
/// address, 3 when it saw another (NAT), 1 when it never answered, 4 when the other
/// task's metadata endpoint (its supervisor's port 51679) answered at the task's address.
pub(crate) fn client() -> Value {
    let script = "me=$(busybox ip -4 -o addr show eth0 | busybox awk '{print $4}' | busybox cut -d/ -f1); \
        for i in $(busybox seq 1 60); do r=$(busybox timeout 3 busybox wget -q -O - http://$TARGET:8080/cgi-bin/who) && break; sleep 0.25; done; \
        echo \"me=$me got=$r\"; [ -n \"$r\" ] || exit 1; \
        busybox timeout 3 busybox nc $TARGET 51679 </dev/null && exit 4; \
        case \"$r\" in *=$me|*:$me|*:$me]) exit 0;; esac; exit 3";
    json!({
        "family": "netbox-client",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["EC2"],
        "cpu": "128",
        "memory": "64",
        "containerDefinitions": [{
            "name": "main",
            "image": "public.ecr.aws/docker/library/busybox:1.36",
            "command": ["sh", "-c", script],
            "essential": true
        }]
    })
}

pub(crate) fn describe_task(api: &Api, arn: &str) -> Value {
    let v = api.aws_json(&["describe-tasks", "--tasks", arn]);
    v["tasks"][0].clone()
}

pub(crate) fn wait_status(api: &Api, arn: &str, status: &str) -> Value {
    api.wait_for(90, &format!("task {arn} {status}"), || {
        let t = describe_task(api, arn);
        (t["lastStatus"] == status).then_some(t)
    })
}

/// The task's private address (its ENI attachment).
pub(crate) fn private_ip(t: &Value) -> String {
    t["attachments"][0]["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "privateIPv4Address")
        .unwrap_or_else(|| panic!("no private address in {t:#}"))["value"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The STOPPED task of service `drain` that had address `ip`.
pub(crate) fn stopped_drain_task_at(api: &Api, ip: &str) -> Option<Value> {
    api.aws_json(&[
        "list-tasks",
        "--service-name",
        "drain",
        "--desired-status",
        "STOPPED",
    ])["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| describe_task(api, a.as_str().unwrap()))
        .find(|t| private_ip(t) == ip)
}

/// Runs `family` on the box with attribute `box=<i>`; returns the task's ARN.
pub(crate) fn run_on(api: &Api, family: &str, i: usize, env: Option<(&str, &str)>) -> String {
    let constraint = format!("type=memberOf,expression=attribute:box=={i}");
    let mut args = vec![
        "run-task",
        "--task-definition",
        family,
        "--launch-type",
        "EC2",
        "--placement-constraints",
        &constraint,
    ];
    let overrides;
    if let Some((k, v)) = env {
        overrides = json!({"containerOverrides": [{"name": "main", "environment": [{"name": k, "value": v}]}]})
            .to_string();
        args.extend(["--overrides", &overrides]);
    }
    let v = api.aws_json(&args);
    assert_eq!(v["failures"], json!([]), "{v:#}");
    v["tasks"][0]["taskArn"].as_str().unwrap().to_string()
}

pub(crate) fn id_of(arn: &str) -> String {
    arn.rsplit('/').next().unwrap().to_string()
}

/// Nothing of tasks `ids` is left on box `b`, and (its agent stopped) no route to the
/// other boxes, no nftables table of minifargate's, no link but lo, eth0 and its task
/// bridge (which outlives its tasks by design, like docker0).
/// Stops every box's agent for good (SIGTERM, then `agent --leave`), then checks each box
/// is left with nothing of tasks `ids` ([`assert_box_clean`]).
pub(crate) fn stop_for_good_and_check_clean(boxes: &mut [NetBox], ids: &[String]) {
    for b in boxes.iter_mut() {
        let st = b.stop_for_good();
        assert!(st.success(), "{st:?}");
    }
    for b in boxes.iter() {
        assert_box_clean(b, ids);
    }
}

pub(crate) fn assert_box_clean(b: &NetBox, ids: &[String]) {
    for id in ids {
        common::leaks::wait_for(&format!("the processes of task {id} to go"), || {
            task_processes(id).is_empty()
        });
        // The supervisor removes them after its processes are gone.
        common::leaks::wait_for(&format!("the cgroups of task {id} to go"), || {
            task_cgroups(id).is_empty()
        });
        let pin = Path::new("/run/netns").join(format!("mfg-{id}"));
        common::leaks::wait_for(&format!("{} to go", pin.display()), || {
            let _ = b.cmd().arg("list-tasks").output();
            !pin.exists()
        });
    }
    let bridge = b.mf.bridge();
    common::leaks::wait_for(&format!("the task veths of {} to go", b.name), || {
        b.links()
            .iter()
            .all(|l| l == "lo" || l == "eth0" || *l == bridge)
    });
    assert_eq!(
        b.peer_routes(),
        Vec::<String>::new(),
        "routes left in {}",
        b.name
    );
    // The table stays (until `system reset`), holding nothing of the tasks.
    let table = netns::nft::table_name(&bridge);
    common::leaks::wait_for(
        &format!("the tasks' nftables elements of {} to go", b.name),
        || {
            let _ = b.cmd().arg("list-tasks").output();
            common::leaks::table_leftovers(b.exec("nft"), &table).is_empty()
        },
    );
    let left = mounts_under(&b.mf, &[]);
    assert!(left.is_empty(), "mounts left in {}: {left:#?}", b.name);
}

#[test]
fn tasks_on_two_boxes_reach_each_other_at_their_own_addresses() {
    let mut lan = Lan::new();
    let etcd = Etcd::start_for(&[&lan.gateway.to_string()]);
    let (api, mut boxes) = cluster(&mut lan, &etcd, &[], 2, 5, true);
    let subnets = [task_subnet(&boxes[0]), task_subnet(&boxes[1])];
    // Box 0 leased the first free /28 of the range; box 1 kept its own /26.
    let range: netns::Subnet = PINNED_RANGE.parse().unwrap();
    let pinned: netns::Subnet = subnets[1].parse().unwrap();
    assert_eq!(
        subnets[0],
        range
            .split(28)
            .find(|s| !s.overlaps(&pinned))
            .unwrap()
            .to_string()
    );
    assert_eq!(
        subnets[1],
        boxes[1].mf.env_value("MINIFARGATE_SUBNET").unwrap()
    );
    // Each box routes the other's subnet via the other's address (tagged: proto 109,
    // realm 109), and nothing else.
    for (me, other) in [(0, 1), (1, 0)] {
        let want = format!("{} via {} dev eth0", subnets[other], boxes[other].address);
        let routes = api.wait_for(20, "the route to the other box", || {
            let r = boxes[me].peer_routes();
            (r.len() == 1 && r[0].starts_with(&want)).then_some(r)
        });
        assert!(routes[0].contains("realm 109"), "{routes:?}");
    }

    // A box pinned (MINIFARGATE_SUBNET) to a subnet overlapping another box's is
    // refused, naming that box, before it registers.
    let mut third = common::cli::Mf::new();
    let overlapping = format!("{}/24", subnets[1].split('/').next().unwrap());
    third.set_env("MINIFARGATE_SUBNET", &overlapping);
    let mut agent = third
        .cmd()
        .args(["agent", "--cluster", &etcd.endpoint()])
        .args(etcd.agent_args())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = api.wait_for(20, "the overlapping agent to exit", || {
        agent.try_wait().unwrap()
    });
    let mut err = String::new();
    std::io::Read::read_to_string(&mut agent.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    let want = format!(
        "MINIFARGATE_SUBNET={} overlaps {}, the task subnet of container instance {}",
        overlapping.parse::<netns::Subnet>().unwrap(),
        subnets[1],
        boxes[1].id()
    );
    assert!(err.contains(&want), "{err}");
    assert_eq!(
        api.aws_json(&["list-container-instances"])["containerInstanceArns"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    register(&api, "web.json", &web());
    register(&api, "client.json", &client());
    let servers = [
        run_on(&api, "netbox-web", 0, None),
        run_on(&api, "netbox-web", 1, None),
    ];
    let ips: Vec<String> = servers
        .iter()
        .map(|s| private_ip(&wait_status(&api, s, "RUNNING")))
        .collect();
    for (i, ip) in ips.iter().enumerate() {
        let s: netns::Subnet = subnets[i].parse().unwrap();
        assert!(s.contains(ip.parse().unwrap()), "{ip} not in box {i}'s {s}");
    }
    // A client on each box asks the server on the other one, by its private address: it
    // answers, and it saw the client's own address.
    let clients = [
        run_on(&api, "netbox-client", 0, Some(("TARGET", &ips[1]))),
        run_on(&api, "netbox-client", 1, Some(("TARGET", &ips[0]))),
    ];
    for c in &clients {
        let t = wait_status(&api, c, "STOPPED");
        assert_eq!(
            t["containers"][0]["exitCode"], 0,
            "the client (0: reached, no NAT; 3: reached through NAT; 1: never reached; 4: the \
             other task's metadata endpoint reached): {t:#}"
        );
    }
    for s in &servers {
        api.aws_json(&["stop-task", "--task", s]);
    }
    for s in &servers {
        wait_status(&api, s, "STOPPED");
    }

    // Box 0's agent stops: its routes stay (the data plane outlives the agent: a
    // restarted one adopts them) until `agent --leave`; its subnet stays leased (the
    // box's tasks would keep their addresses) and box 1 keeps routing it, until box 0's
    // instance is deregistered: then its subnet is released and box 1's route to it goes.
    let arn0 = boxes[0].arn();
    let routes0 = boxes[0].peer_routes();
    let st = boxes[0].signal("-TERM").unwrap();
    assert!(st.success(), "{st:?}");
    assert_eq!(boxes[0].peer_routes(), routes0);
    assert_eq!(routes0.len(), 1, "{routes0:?}");
    boxes[0].leave();
    assert_eq!(boxes[0].peer_routes(), Vec::<String>::new());
    let keys = || {
        let out = etcd.etcdctl(&["get", "--prefix", "--keys-only", "/minifargate/v1/subnets/"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .count()
    };
    assert_eq!(keys(), 2);
    assert_eq!(boxes[1].peer_routes().len(), 1);
    api.aws_json(&[
        "deregister-container-instance",
        "--container-instance",
        &arn0,
    ]);
    assert_eq!(keys(), 1, "box 0's subnet released at deregistration");
    api.wait_for(10, "box 1's route to box 0 removed", || {
        boxes[1].peer_routes().is_empty().then_some(())
    });
    let st = boxes[1].stop_for_good();
    assert!(st.success(), "{st:?}");
    for i in 0..2 {
        assert_box_clean(&boxes[i], &[id_of(&servers[i]), id_of(&clients[i])]);
    }
}

pub(crate) const SLEEPER: &str = r#"{
  "family": "netbox-sleeper",
  "networkMode": "awsvpc",
  "requiresCompatibilities": ["EC2"],
  "cpu": "128",
  "memory": "64",
  "containerDefinitions": [{
    "name": "main",
    "image": "public.ecr.aws/docker/library/busybox:1.36",
    "command": ["sleep", "300"],
    "stopTimeout": 2,
    "essential": true
  }]
}"#;

/// The status of task `id` in box `b`'s own store.
pub(crate) fn local_status(b: &NetBox, id: &str) -> (String, String) {
    let v = b.json(&["describe-tasks", "--tasks", id]);
    let t = &v["tasks"][0];
    (
        t["lastStatus"].as_str().unwrap_or_default().to_string(),
        t["stoppedReason"].as_str().unwrap_or_default().to_string(),
    )
}

/// Box `lost` is cut off by `cut` and back by `heal`: its agent is disconnected, its
/// service task is replaced on the other box, it keeps running on the lost box until it
/// is back, which then stops it. Returns the ids of the tasks that ran on it.
pub(crate) fn lose_and_return(
    api: &Api,
    boxes: &[NetBox],
    lost: usize,
    cut: &dyn Fn(),
    heal: &dyn Fn(),
) -> Vec<String> {
    let arn = boxes[lost].arn();
    let other = boxes[1 - lost].arn();
    let before = api.wait_for(90, "2 service tasks RUNNING", || {
        let p = service_tasks(api, "web");
        (p.len() == 2).then_some(p)
    });
    let mine: Vec<String> = before
        .iter()
        .filter(|(_, ci)| *ci == arn)
        .map(|(t, _)| id_of(t))
        .collect();
    assert!(!mine.is_empty(), "no task on the box to lose: {before:?}");
    let t0 = Instant::now();
    cut();
    api.wait_for(30, "the cut-off box disconnected", || {
        (!connected(api, &arn)).then_some(())
    });
    let disconnected = t0.elapsed();
    api.wait_for(
        90,
        "the service's tasks all RUNNING on the other box",
        || {
            let p = service_tasks(api, "web");
            (p.len() == 2 && p.iter().all(|(_, ci)| *ci == other)).then_some(())
        },
    );
    let replaced = t0.elapsed();
    eprintln!(
        "box {lost} cut off: agentConnected false at {disconnected:?}, its tasks replaced at {replaced:?}"
    );
    // Still running there: the box cannot know yet.
    for id in &mine {
        assert_eq!(local_status(&boxes[lost], id).0, "RUNNING");
    }
    heal();
    for id in &mine {
        let (status, reason) =
            api.wait_for(60, "the returned box stopping its replaced task", || {
                let s = local_status(&boxes[lost], id);
                (s.0 == "STOPPED").then_some(s)
            });
        assert!(reason.contains("no longer assigned"), "{status}: {reason}");
    }
    api.wait_for(30, "the box connected again", || {
        connected(api, &arn).then_some(())
    });
    mine
}

#[test]
fn a_box_cut_off_or_frozen_is_replaced_and_stops_its_tasks_when_back() {
    let mut lan = Lan::new();
    let etcd = Etcd::start_for(&[&lan.gateway.to_string()]);
    let (api, mut boxes) = cluster(
        &mut lan,
        &etcd,
        &["--lost-instance-after", "1"],
        2,
        3,
        false,
    );
    // Both boxes leased a subnet of the range at once: two different /28s of it.
    let range: netns::Subnet = lan.task_range().parse().unwrap();
    let leased: Vec<netns::Subnet> = boxes
        .iter()
        .map(|b| task_subnet(b).parse().unwrap())
        .collect();
    assert_ne!(leased[0], leased[1]);
    for s in &leased {
        assert!(
            s.prefix() == 28 && range.overlaps(s),
            "{s} is not a /28 of {range}"
        );
    }
    register(
        &api,
        "sleeper.json",
        &serde_json::from_str(SLEEPER).unwrap(),
    );
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "netbox-sleeper",
        "--desired-count",
        "2",
        "--launch-type",
        "EC2",
    ]);

    // Box 0's cable is pulled (its link down: a partition), then plugged back.
    let (b0, b1) = (&boxes[0], &boxes[1]);
    let mut gone = lose_and_return(&api, &boxes, 0, &|| b0.link(false), &|| b0.link(true));
    // Box 1's agent is frozen (SIGSTOP), then resumes (SIGCONT): the same, without a kill.
    let pid = b1.agent_pid().to_string();
    let signal = |sig: &'static str| {
        let pid = pid.clone();
        move || {
            let _ = std::process::Command::new("kill")
                .args([sig, &pid])
                .status();
        }
    };
    gone.extend(lose_and_return(
        &api,
        &boxes,
        1,
        &signal("-STOP"),
        &signal("-CONT"),
    ));

    // Scaled to 0, the agents stopped: nothing left on either box.
    let last: Vec<String> = service_tasks(&api, "web")
        .into_iter()
        .map(|(t, _)| id_of(&t))
        .collect();
    api.aws_json(&["update-service", "--service", "web", "--desired-count", "0"]);
    api.wait_for(60, "no service task RUNNING", || {
        service_tasks(&api, "web").is_empty().then_some(())
    });
    for b in boxes.iter_mut() {
        let st = b.stop_for_good();
        assert!(st.success(), "{st:?}");
    }
    let all: Vec<String> = gone.into_iter().chain(last).collect();
    for b in &boxes {
        // Each box's check covers every task: a task that ran elsewhere has nothing here.
        assert_box_clean(b, &all);
    }
}

/// Routes on the host (where serve runs, with no agent of its own) to the boxes' task
/// subnets, each via its box, as an operator gives a serve's host that has no agent
/// (docs/load-balancing.md "Cluster mode"); removed when dropped.
pub(crate) struct HostRoutes(Vec<String>);

impl HostRoutes {
    pub(crate) fn to(boxes: &[NetBox]) -> HostRoutes {
        let mut out = HostRoutes(Vec::new());
        for b in boxes {
            let subnet = task_subnet(b);
            common::netbox::ip(&["route", "replace", &subnet, "via", &b.address.to_string()]);
            out.0.push(subnet);
        }
        out
    }
}

impl Drop for HostRoutes {
    fn drop(&mut self) {
        for s in &self.0 {
            let _ = std::process::Command::new("ip")
                .args(["route", "del", s])
                .status();
        }
    }
}

/// A web server whose `/` answers the task's own address.
pub(crate) fn addressed_web() -> Value {
    let script = "me=$(busybox ip -4 -o addr show eth0 | busybox awk '{print $4}' | busybox cut -d/ -f1); \
        busybox mkdir -p /www && echo $me > /www/index.html && exec busybox httpd -f -p 8080 -h /www";
    json!({
        "family": "netbox-lbweb",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["EC2"],
        "cpu": "128",
        "memory": "64",
        "containerDefinitions": [{
            "name": "main",
            "image": "public.ecr.aws/docker/library/busybox:1.36",
            "command": ["sh", "-c", script],
            "portMappings": [{"containerPort": 8080}],
            "stopTimeout": 2,
            "essential": true
        }]
    })
}

/// `curl http://NAME/` with NAME resolved as `hosts` (a serve's hosts file) says: the
/// body, or None when it failed.
pub(crate) fn get_by_name(hosts: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(hosts).ok()?;
    let ip = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))?
        .split_whitespace()
        .next()?
        .to_string();
    let out = std::process::Command::new("curl")
        .args(["-s", "--noproxy", "*", "-m", "5", "-f"])
        .args(["--resolve", &format!("{name}:80:{ip}")])
        .arg(format!("http://{name}/"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The healthy targets of `tg` as serve `api` describes them.
pub(crate) fn healthy_targets(api: &Api, tg: &str) -> Vec<String> {
    let h = elbv2(api, &["describe-target-health", "--target-group-arn", tg]);
    let mut out: Vec<String> = h["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["TargetHealth"]["State"] == "healthy")
        .map(|d| d["Target"]["Id"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// Asks `http://$NAME/` (resolved by the task's DNS server) until both `$A` and `$B`
/// answered: exits 0 then, 1 if they never did (what answered on stdout).
pub(crate) fn lb_client() -> Value {
    let script = "cat /etc/resolv.conf; seen=''; for i in $(busybox seq 1 120); do \
        r=$(busybox timeout 3 busybox wget -q -O - http://$NAME/) && seen=\"$seen $r\"; \
        case \"$seen\" in *\"$A\"*) case \"$seen\" in *\"$B\"*) echo \"seen:$seen\"; exit 0;; esac;; esac; \
        sleep 0.2; done; echo \"seen:$seen\"; exit 1";
    json!({
        "family": "netbox-lbclient",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["EC2"],
        "cpu": "128",
        "memory": "64",
        "containerDefinitions": [{
            "name": "main",
            "image": "public.ecr.aws/docker/library/busybox:1.36",
            "command": ["sh", "-c", script],
            "essential": true
        }]
    })
}

/// A busybox task of family `family` (awsvpc, 128 CPU units, 64 MiB) running shell
/// `script` in a loop until SIGTERM (stopTimeout 2 s): the clients the tests read.
pub(crate) fn looping_client(family: &str, script: &str) -> Value {
    json!({
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["EC2"],
        "cpu": "128",
        "memory": "64",
        "containerDefinitions": [{
            "name": "main",
            "image": "public.ecr.aws/docker/library/busybox:1.36",
            "command": ["sh", "-c", script],
            "stopTimeout": 2,
            "essential": true
        }]
    })
}

/// Asks `http://$NAME/` every 0.1 s (each try bounded to 1 s) forever, printing `ok <time>`
/// or `fail <time>` (the host's uptime in seconds: busybox's `date` has no fractions).
pub(crate) fn lb_watcher() -> Value {
    let script = "trap 'exit 0' TERM; while true; do \
        if busybox timeout 1 busybox wget -q -O /dev/null http://$NAME/; then echo \"ok $(busybox cut -d' ' -f1 /proc/uptime)\"; \
        else echo \"fail $(busybox cut -d' ' -f1 /proc/uptime)\"; fi; sleep 0.1; done";
    looping_client("netbox-lbwatcher", script)
}

/// Runs `family` on box `i` with `env` (name, value pairs); returns the task's ARN.
pub(crate) fn run_with_env(api: &Api, family: &str, i: usize, env: &[(&str, &str)]) -> String {
    let env: Vec<Value> = env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let overrides =
        json!({"containerOverrides": [{"name": "main", "environment": env}]}).to_string();
    let constraint = format!("type=memberOf,expression=attribute:box=={i}");
    let v = api.aws_json(&[
        "run-task",
        "--task-definition",
        family,
        "--launch-type",
        "EC2",
        "--placement-constraints",
        &constraint,
        "--overrides",
        &overrides,
    ]);
    assert_eq!(v["failures"], json!([]), "{v:#}");
    v["tasks"][0]["taskArn"].as_str().unwrap().to_string()
}

/// Asks `http://ADDRESS/` with `Host: NAME` over one kept-alive connection until the
/// file STOP exists (`ADDRESS NAME STOP` its arguments); writes `STOP.ok` at its first
/// answer; prints how many requests were answered (200), how many failed, and how many
/// connections it opened.
const KEEP_ALIVE_CLIENT: &str = r#"
import http.client, json, os, sys, time
addr, name, stop = sys.argv[1:4]
c = http.client.HTTPConnection(addr, 80, timeout=5)
answered = failed = connections = 0
sock = None
while not os.path.exists(stop):
    try:
        c.request("GET", "/", headers={"Host": name})
        r = c.getresponse()
        r.read()
        if c.sock is not None and c.sock is not sock:
            sock = c.sock
            connections += 1
        if r.status == 200:
            answered += 1
            if answered == 1:
                open(stop + ".ok", "w").write("ok")
        else:
            failed += 1
    except Exception:
        failed += 1
        c.close()
    time.sleep(0.02)
print(json.dumps({"answered": answered, "failed": failed, "connections": connections}))
"#;

/// A path in box `b`'s directory that a client started in it stops at.
fn box_stop_file(b: &NetBox) -> std::path::PathBuf {
    b.mf.dir.path().join("keep-alive.stop")
}

/// The lines task `id` wrote, as box `b` keeps them.
pub(crate) fn box_logs(b: &NetBox, id: &str) -> String {
    let out = b.cmd().args(["logs", id]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The times (the host's uptime) of the lines `word <time>` of `logs`.
pub(crate) fn times(logs: &str, word: &str) -> Vec<f64> {
    logs.lines()
        .filter_map(|l| l.trim().strip_prefix(word)?.trim().parse().ok())
        .collect()
}

/// The host's uptime, in seconds (the clock the watcher's lines use).
pub(crate) fn now_secs() -> f64 {
    let up = std::fs::read_to_string("/proc/uptime").unwrap();
    up.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn a_load_balancer_reaches_service_tasks_on_both_boxes_and_moves_with_the_leader() {
    let mut lan = Lan::new();
    let etcd = Etcd::start_for(&[&lan.gateway.to_string()]);
    let fast = ["--leader-ttl", "2"];
    let (api1, mut boxes) = cluster(&mut lan, &etcd, &fast, 2, 5, false);
    let api2 = common::cluster::serve_with(&etcd, &fast);
    let _routes = HostRoutes::to(&boxes);
    let subnets: Vec<netns::Subnet> = boxes
        .iter()
        .map(|b| task_subnet(b).parse().unwrap())
        .collect();

    // Made through one serve: the load balancer, its target group and listener.
    let lb = common::elb::create_alb(&api2, "cluster-web");
    let (lb_arn, dns, lb_ip) = (lb.arn, lb.dns.to_ascii_lowercase(), lb.ip);
    let tg_arn = common::elb::http_target_group(&api2, "cluster-web", 2);
    let listener_arn = common::elb::http_listener(&api2, &lb_arn, "80", &tg_arn);
    // ... described the same through the other serve.
    let described = api1.wait_for(10, "the load balancer on the other serve", || {
        let out = api1.aws_in(
            "elbv2",
            &["describe-listeners", "--load-balancer-arn", &lb_arn],
        );
        out.status
            .success()
            .then(|| serde_json::from_slice::<Value>(&out.stdout).unwrap())
    });
    assert_eq!(
        described["Listeners"][0]["ListenerArn"],
        listener_arn.as_str()
    );

    // A service of 2 awsvpc tasks, one on each box, behind it.
    register(&api1, "lbweb.json", &addressed_web());
    let tasks = common::cluster::two_spread_tasks_behind(&api1, "lbweb", "netbox-lbweb", &tg_arn);
    let ips: Vec<String> = {
        let mut v: Vec<String> = tasks
            .iter()
            .map(|(t, _)| private_ip(&describe_task(&api1, t)))
            .collect();
        v.sort();
        v
    };
    for s in &subnets {
        assert!(
            ips.iter().any(|ip| s.contains(ip.parse().unwrap())),
            "no task in {s}: {ips:?}"
        );
    }
    // The leader's scheduler registered both (any box); its health checks pass.
    let leader = api1.wait_for(10, "a leader", || common::cluster::leader_pid(&etcd));
    let (lead, other) = if leader == api1.server_pid() {
        (&api1, &api2)
    } else {
        (&api2, &api1)
    };
    lead.wait_for(90, "2 healthy targets", || {
        (healthy_targets(lead, &tg_arn) == ips).then_some(())
    });
    // ... the serve that does not lead answers with the health the leader published.
    other.wait_for(10, "2 healthy targets on the other serve", || {
        (healthy_targets(other, &tg_arn) == ips).then_some(())
    });
    let lead_hosts = Path::new(&lead.mf.env_value("MINIFARGATE_HOSTS_FILE").unwrap()).to_path_buf();
    let other_hosts =
        Path::new(&other.mf.env_value("MINIFARGATE_HOSTS_FILE").unwrap()).to_path_buf();
    // From the host, by name: answered by the tasks of both boxes.
    let mut seen: Vec<String> = (0..6)
        .map(|_| {
            get_by_name(&lead_hosts, &dns).unwrap_or_else(|| panic!("http://{dns}/ did not answer"))
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ips);
    // Only the leader listens and names it.
    assert!(
        !std::fs::read_to_string(&other_hosts)
            .unwrap_or_default()
            .contains(&dns),
        "the serve that does not lead names the load balancer"
    );
    // Each box listens itself: the load balancer's address on its own lo, no route to
    // the leader for it.
    for b in &boxes {
        api1.wait_for(20, "the load balancer's address on the box's lo", || {
            b.ip(&["-4", "-o", "addr", "show", "dev", "lo"])
                .contains(&format!("{lb_ip}/32"))
                .then_some(())
        });
        assert_eq!(b.ip(&["-4", "route", "show", "proto", "110"]).trim(), "");
    }
    // On each box itself: the name in its hosts file (the agent's block), answered there.
    for b in &boxes {
        let hosts = b.mf.env_value("MINIFARGATE_HOSTS_FILE").unwrap();
        let line = format!("{lb_ip}\t{dns}");
        api1.wait_for(20, "the name in the box's hosts file", || {
            std::fs::read_to_string(&hosts)
                .unwrap_or_default()
                .contains(&line)
                .then_some(())
        });
        let out = b
            .exec("curl")
            .args(["-s", "--noproxy", "*", "-m", "5", "-f"])
            .args(["--resolve", &format!("{dns}:80:{lb_ip}")])
            .arg(format!("http://{dns}/"))
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(ips.contains(&body), "{} from {}: {body:?}", dns, b.name);
    }
    // From inside a task on each box (neither is the leader's), by name: answered by the
    // tasks of both boxes.
    register(&api1, "lbclient.json", &lb_client());
    register(&api1, "lbwatcher.json", &lb_watcher());
    let clients: Vec<String> = (0..2)
        .map(|i| {
            run_with_env(
                &api1,
                "netbox-lbclient",
                i,
                &[("NAME", &dns), ("A", &ips[0]), ("B", &ips[1])],
            )
        })
        .collect();
    for c in &clients {
        let t = wait_status(&api1, c, "STOPPED");
        assert_eq!(
            t["containers"][0]["exitCode"], 0,
            "http://{dns}/ from a task was not answered by both boxes' tasks: {t:#}"
        );
    }
    // A task of box 0 asking the load balancer all along.
    let watcher = run_with_env(&api1, "netbox-lbwatcher", 0, &[("NAME", &dns)]);
    let watcher_id = id_of(&watcher);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let l = box_logs(&boxes[0], &watcher_id);
        if !times(&l, "ok").is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the watcher never answered: {l}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // A keep-alive client on box 1 itself, its connection opened before the kill.
    let stop_file = box_stop_file(&boxes[1]);
    let keep_alive = boxes[1]
        .exec("python3")
        .args(["-c", KEEP_ALIVE_CLIENT, &lb_ip.to_string(), &dns])
        .arg(&stop_file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    api1.wait_for(20, "the keep-alive client's first answer", || {
        std::fs::read_to_string(format!("{}.ok", stop_file.display()))
            .ok()
            .filter(|s| !s.is_empty())
    });

    // The leader dies (SIGKILL): the other serve leads and checks the targets; the
    // boxes' own listeners answer all along, from their last copy of the configuration
    // and health.
    let killed = std::time::Instant::now();
    let killed_at = now_secs();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &lead.server_pid().to_string()])
        .status();
    let back = other.wait_for(
        60,
        "the load balancer answering from the other serve",
        || get_by_name(&other_hosts, &dns),
    );
    let gap = killed.elapsed();
    assert!(ips.contains(&back), "{back}");
    eprintln!("the leader serve killed: the load balancer answered again after {gap:?}");
    assert_eq!(common::cluster::leader_pid(&etcd), Some(other.server_pid()));
    // The new leader checked the targets afresh and published their health: the boxes
    // went on through that too.
    other.wait_for(60, "2 healthy targets on the new leader", || {
        (healthy_targets(other, &tg_arn) == ips).then_some(())
    });
    let healthy_at = now_secs();
    let logs = other.wait_for(
        60,
        "the watcher answered after the new leader's checks",
        || {
            let l = box_logs(&boxes[0], &watcher_id);
            times(&l, "ok")
                .iter()
                .any(|t| *t > healthy_at + 1.0)
                .then_some(l)
        },
    );
    let fail = times(&logs, "fail");
    let failed_after: Vec<f64> = fail.iter().copied().filter(|f| *f > killed_at).collect();
    let answered_after = times(&logs, "ok")
        .iter()
        .filter(|t| **t > killed_at)
        .count();
    eprintln!(
        "the leader serve killed: from a task of box 0, {answered_after} answers and {} \
         failures after the kill",
        failed_after.len()
    );
    assert!(
        failed_after.is_empty(),
        "requests from a task failed after the leader's kill at {killed_at}: {failed_after:?}\n{logs}"
    );
    std::fs::write(&stop_file, b"").unwrap();
    let out = keep_alive.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    eprintln!("the keep-alive client on box 1 across the kill: {said}");
    let said: Value = serde_json::from_str(&said).unwrap_or_else(|e| panic!("{said:?}: {e}"));
    assert_eq!(said["failed"], 0, "{said}");
    assert_eq!(
        said["connections"], 1,
        "the connection of before the kill was kept: {said}"
    );
    assert!(said["answered"].as_u64().unwrap() > 0, "{said}");
    other.aws_json(&["stop-task", "--task", &watcher]);

    // Everything deleted through the serve left: no target, no listener, no address.
    other.aws_json(&[
        "update-service",
        "--service",
        "lbweb",
        "--desired-count",
        "0",
    ]);
    other.wait_for(60, "no service task RUNNING", || {
        service_tasks(other, "lbweb").is_empty().then_some(())
    });
    other.wait_for(30, "the targets deregistered", || {
        let h = elbv2(
            other,
            &["describe-target-health", "--target-group-arn", &tg_arn],
        );
        h["TargetHealthDescriptions"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
    other.aws_json(&["delete-service", "--service", "lbweb"]);
    // The agents stop while the load balancer still exists: their hosts blocks and
    // routes go with them.
    for b in boxes.iter_mut() {
        let st = b.stop_for_good();
        assert!(st.success(), "{st:?}");
    }
    elbv2(other, &["delete-listener", "--listener-arn", &listener_arn]);
    elbv2(
        other,
        &["delete-load-balancer", "--load-balancer-arn", &lb_arn],
    );
    elbv2(
        other,
        &["delete-target-group", "--target-group-arn", &tg_arn],
    );
    other.wait_for(10, "the load balancer's address off lo", || {
        let out = common::netbox::ip(&["-4", "-o", "addr", "show", "dev", "lo"]);
        (!out.contains(&format!("{lb_ip}/32"))).then_some(())
    });
    assert!(
        !std::fs::read_to_string(&other_hosts)
            .unwrap_or_default()
            .contains(&dns)
    );
    let ids: Vec<String> = tasks
        .iter()
        .map(|(t, _)| id_of(t))
        .chain(clients.iter().map(|c| id_of(c)))
        .chain([watcher_id])
        .collect();
    for b in &boxes {
        assert_box_clean(b, &ids);
        assert_eq!(b.ip(&["-4", "route", "show", "proto", "110"]).trim(), "");
        let hosts = b.mf.env_value("MINIFARGATE_HOSTS_FILE").unwrap();
        let left = std::fs::read_to_string(&hosts).unwrap_or_default();
        assert!(!left.contains("minifargate"), "{}: {left}", b.name);
    }
}
