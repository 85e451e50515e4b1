//! Cluster mode across boxes that are network namespaces (issue 38, "How to test it on
//! one machine"; tests/common/netbox.rs): each box is a namespace on a test bridge with
//! its own agent, state and run roots, task bridge, task subnet and nftables table; etcd
//! and the registry are relayed onto that bridge; `serve --cluster` runs on the host and
//! the real AWS CLI drives it. What is checked is what a user would: a task on one box
//! reaches a task on the other at its own address and sees the other's address (no NAT);
//! a box whose cable is pulled, or whose agent is frozen, is lost, its service tasks are
//! replaced on the other box, and once back it stops what was replaced; a load balancer
//! reaches service tasks on both boxes and moves with the leader; a BLUE_GREEN deployment
//! across both boxes flips production with no request failed; a load-balanced service
//! scaled in drains its targets on the boxes before their tasks stop, and a lost box's
//! targets are deregistered and replaced; nothing is left on any box.

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
fn cluster(
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
fn cluster_env(
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
const PINNED_RANGE: &str = "10.97.0.0/16";

/// The task subnet box `b` holds, as its agent logged it.
fn task_subnet(b: &NetBox) -> String {
    common::util::wait_until("the box's task subnet", Duration::from_secs(20), || {
        let log = std::fs::read_to_string(b.log()).ok()?;
        let line = log.lines().find(|l| l.contains("task_subnet="))?;
        let s = line.split("task_subnet=").nth(1)?.split(' ').next()?;
        Some(s.to_string())
    })
}

fn register(api: &Api, name: &str, def: &Value) {
    let f = api.file(name, &def.to_string());
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
}

/// A web server answering `/cgi-bin/who` with `peer=<the client's address as it sees it>`.
fn web() -> Value {
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
fn client() -> Value {
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

fn describe_task(api: &Api, arn: &str) -> Value {
    let v = api.aws_json(&["describe-tasks", "--tasks", arn]);
    v["tasks"][0].clone()
}

fn wait_status(api: &Api, arn: &str, status: &str) -> Value {
    api.wait_for(90, &format!("task {arn} {status}"), || {
        let t = describe_task(api, arn);
        (t["lastStatus"] == status).then_some(t)
    })
}

/// The task's private address (its ENI attachment).
fn private_ip(t: &Value) -> String {
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
fn stopped_drain_task_at(api: &Api, ip: &str) -> Option<Value> {
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
fn run_on(api: &Api, family: &str, i: usize, env: Option<(&str, &str)>) -> String {
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

fn id_of(arn: &str) -> String {
    arn.rsplit('/').next().unwrap().to_string()
}

/// Nothing of tasks `ids` is left on box `b`, and (its agent stopped) no route to the
/// other boxes, no nftables table of minifargate's, no link but lo, eth0 and its task
/// bridge (which outlives its tasks by design, like docker0).
fn assert_box_clean(b: &NetBox, ids: &[String]) {
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

    // Box 0's agent stops: its routes go with it; its subnet stays leased (the box's
    // tasks would keep their addresses) and box 1 keeps routing it, until box 0's
    // instance is deregistered: then its subnet is released and box 1's route to it goes.
    let arn0 = boxes[0].arn();
    let st = boxes[0].signal("-TERM").unwrap();
    assert!(st.success(), "{st:?}");
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
    let st = boxes[1].signal("-TERM").unwrap();
    assert!(st.success(), "{st:?}");
    for i in 0..2 {
        assert_box_clean(&boxes[i], &[id_of(&servers[i]), id_of(&clients[i])]);
    }
}

const SLEEPER: &str = r#"{
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
fn local_status(b: &NetBox, id: &str) -> (String, String) {
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
fn lose_and_return(
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
        let st = b.signal("-TERM").unwrap();
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
struct HostRoutes(Vec<String>);

impl HostRoutes {
    fn to(boxes: &[NetBox]) -> HostRoutes {
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
fn addressed_web() -> Value {
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
fn get_by_name(hosts: &Path, name: &str) -> Option<String> {
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
fn healthy_targets(api: &Api, tg: &str) -> Vec<String> {
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
fn lb_client() -> Value {
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

/// Asks `http://$NAME/` every 0.1 s (each try bounded to 1 s) forever, printing `ok <time>`
/// or `fail <time>` (the host's uptime in seconds: busybox's `date` has no fractions).
fn lb_watcher() -> Value {
    let script = "trap 'exit 0' TERM; while true; do \
        if busybox timeout 1 busybox wget -q -O /dev/null http://$NAME/; then echo \"ok $(busybox cut -d' ' -f1 /proc/uptime)\"; \
        else echo \"fail $(busybox cut -d' ' -f1 /proc/uptime)\"; fi; sleep 0.1; done";
    json!({
        "family": "netbox-lbwatcher",
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

/// Runs `family` on box `i` with `env` (name, value pairs); returns the task's ARN.
fn run_with_env(api: &Api, family: &str, i: usize, env: &[(&str, &str)]) -> String {
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

/// The lines task `id` wrote, as box `b` keeps them.
fn box_logs(b: &NetBox, id: &str) -> String {
    let out = b.cmd().args(["logs", id]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The times (the host's uptime) of the lines `word <time>` of `logs`.
fn times(logs: &str, word: &str) -> Vec<f64> {
    logs.lines()
        .filter_map(|l| l.trim().strip_prefix(word)?.trim().parse().ok())
        .collect()
}

/// The host's uptime, in seconds (the clock the watcher's lines use).
fn now_secs() -> f64 {
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
    // Each box routes the load balancers' range via the leader's host (the Lan's
    // gateway here), without NAT (realm 109).
    for b in &boxes {
        let want = format!("via {} dev eth0", lan.gateway);
        api1.wait_for(20, "the route to the load balancers", || {
            let r = b.ip(&["-4", "route", "show", "proto", "110"]);
            (r.contains(&want) && r.contains("realm 109")).then_some(())
        });
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

    // The leader dies (SIGKILL): the other serve leads, takes the listeners, and the
    // name answers again, on the host and in the task.
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
    let logs = other.wait_for(60, "the watcher answered after the kill", || {
        let l = box_logs(&boxes[0], &watcher_id);
        times(&l, "ok")
            .iter()
            .any(|t| *t > killed_at + 0.5)
            .then_some(l)
    });
    let ok = times(&logs, "ok");
    let fail = times(&logs, "fail");
    let last_ok = ok
        .iter()
        .copied()
        .filter(|t| *t <= killed_at)
        .fold(f64::MIN, f64::max);
    let first_back = ok
        .iter()
        .copied()
        .filter(|t| *t > killed_at && fail.iter().any(|f| *f > killed_at && f < t))
        .fold(f64::MAX, f64::min);
    eprintln!(
        "the leader serve killed: from a task of box 0, the load balancer's last answer \
         {:.2} s before the kill, failed {} times after it, answered again {:.2} s after it",
        killed_at - last_ok,
        fail.iter().filter(|f| **f > killed_at).count(),
        if first_back == f64::MAX {
            0.0
        } else {
            first_back - killed_at
        }
    );
    other.aws_json(&["stop-task", "--task", &watcher]);
    other.wait_for(60, "2 healthy targets on the new leader", || {
        (healthy_targets(other, &tg_arn) == ips).then_some(())
    });

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
        let st = b.signal("-TERM").unwrap();
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

fn sd(api: &Api, args: &[&str]) -> Value {
    let out = api.aws_in("servicediscovery", args);
    assert!(
        out.status.success(),
        "aws servicediscovery {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Resolves `NAME` with its resolv.conf's server (busybox nslookup) until the answer
/// holds `$WANT`: exits 0 then, 1 if it never does (the last answer on stdout).
fn resolver_client() -> Value {
    let script = "cat /etc/resolv.conf; for i in $(busybox seq 1 60); do \
        r=$(busybox nslookup -timeout=2 $NAME 2>&1); \
        case \"$r\" in *\"$WANT\"*) echo \"$r\"; exit 0;; esac; sleep 0.5; done; echo \"$r\"; exit 1";
    json!({
        "family": "netbox-resolver",
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

#[test]
fn a_task_on_one_box_resolves_a_cloud_map_name_of_a_service_on_the_other() {
    let mut lan = Lan::new();
    let etcd = Etcd::start_for(&[&lan.gateway.to_string()]);
    let (api, mut boxes) = cluster(&mut lan, &etcd, &[], 2, 5, false);

    let op = sd(
        &api,
        &[
            "create-private-dns-namespace",
            "--name",
            "cluster.local",
            "--vpc",
            "vpc-1",
        ],
    );
    let o = sd(
        &api,
        &[
            "get-operation",
            "--operation-id",
            op["OperationId"].as_str().unwrap(),
        ],
    );
    let ns = o["Operation"]["Targets"]["NAMESPACE"]
        .as_str()
        .unwrap()
        .to_string();
    let svc = sd(
        &api,
        &[
            "create-service",
            "--name",
            "web",
            "--namespace-id",
            &ns,
            "--dns-config",
            "RoutingPolicy=MULTIVALUE,DnsRecords=[{Type=A,TTL=5}]",
        ],
    );
    let registry = svc["Service"]["Arn"].as_str().unwrap().to_string();
    let svc_id = svc["Service"]["Id"].as_str().unwrap().to_string();

    // The service's one task on box 1, registered by the leader's scheduler.
    register(&api, "lbweb.json", &addressed_web());
    register(&api, "resolver.json", &resolver_client());
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "netbox-lbweb",
        "--desired-count",
        "1",
        "--launch-type",
        "EC2",
        "--placement-constraints",
        "type=memberOf,expression=attribute:box==1",
        "--service-registries",
        &format!("registryArn={registry}"),
    ]);
    let web = api.wait_for(120, "the service's task RUNNING", || {
        let p = service_tasks(&api, "web");
        (p.len() == 1).then_some(p)
    });
    assert_eq!(web[0].1, boxes[1].arn());
    let ip = private_ip(&describe_task(&api, &web[0].0));
    api.wait_for(30, "the task an instance of the Cloud Map service", || {
        let l = sd(&api, &["list-instances", "--service-id", &svc_id]);
        (l["Instances"][0]["Attributes"]["AWS_INSTANCE_IPV4"] == ip.as_str()).then_some(())
    });

    // A task on box 0 resolves web.cluster.local to it (the box's DNS server).
    let overrides = json!({"containerOverrides": [{"name": "main", "environment": [
        {"name": "NAME", "value": "web.cluster.local"}, {"name": "WANT", "value": ip}]}]})
    .to_string();
    let v = api.aws_json(&[
        "run-task",
        "--task-definition",
        "netbox-resolver",
        "--launch-type",
        "EC2",
        "--placement-constraints",
        "type=memberOf,expression=attribute:box==0",
        "--overrides",
        &overrides,
    ]);
    let resolver = v["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let t = wait_status(&api, &resolver, "STOPPED");
    assert_eq!(
        t["containers"][0]["exitCode"], 0,
        "web.cluster.local did not resolve to {ip} in a task of box 0: {t:#}"
    );

    // Scaled to 0: its instance goes; the boxes stopped: nothing left on either.
    api.aws_json(&["update-service", "--service", "web", "--desired-count", "0"]);
    api.wait_for(60, "the instance deregistered", || {
        let l = sd(&api, &["list-instances", "--service-id", &svc_id]);
        l["Instances"].as_array().unwrap().is_empty().then_some(())
    });
    let ids = vec![id_of(&web[0].0), id_of(&resolver)];
    for b in boxes.iter_mut() {
        let st = b.signal("-TERM").unwrap();
        assert!(st.success(), "{st:?}");
    }
    for b in &boxes {
        assert_box_clean(b, &ids);
    }
}

/// A client of Service Connect's alias `b.sc:9000`: asks it (busybox `nc`, the name
/// resolved by the task's DNS server) every 0.2 s, printing `GOT <answer>`.
fn sc_client() -> Value {
    let script = "trap 'exit 0' TERM; while true; do \
        echo GOT $( (printf 'GET / HTTP/1.0\\r\\n\\r\\n'; sleep 1) | busybox timeout 3 busybox nc b.sc 9000 | busybox tail -n 1); \
        sleep 0.2; done";
    json!({
        "family": "netbox-scclient",
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

#[test]
fn a_service_connect_alias_on_one_box_spreads_connections_over_the_tasks_of_both() {
    let mut lan = Lan::new();
    let etcd = Etcd::start_for(&[&lan.gateway.to_string()]);
    let (api, mut boxes) = cluster(&mut lan, &etcd, &[], 2, 5, false);
    sd(
        &api,
        &[
            "create-private-dns-namespace",
            "--name",
            "sc.local",
            "--vpc",
            "vpc-1",
        ],
    );
    // b: a task on each box answering its own address, port mapping `web`, behind the
    // alias b.sc:9000; a: a client service on box 0.
    let mut web = addressed_web();
    web["family"] = json!("netbox-scb");
    web["containerDefinitions"][0]["portMappings"] =
        json!([{"containerPort": 8080, "name": "web"}]);
    register(&api, "scb.json", &web);
    register(&api, "sca.json", &sc_client());
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    let server = r#"{"enabled":true,"namespace":"sc.local","services":[{"portName":"web","discoveryName":"b","clientAliases":[{"port":9000,"dnsName":"b.sc"}]}]}"#;
    let client = r#"{"enabled":true,"namespace":"sc.local"}"#;
    for (name, family, count, placement, sc) in [
        ("b", "netbox-scb", "2", "type=distinctInstance", server),
        (
            "a",
            "netbox-scclient",
            "1",
            "type=memberOf,expression=attribute:box==0",
            client,
        ),
    ] {
        api.aws_json(&[
            "create-service",
            "--service-name",
            name,
            "--task-definition",
            family,
            "--desired-count",
            count,
            "--launch-type",
            "EC2",
            "--placement-constraints",
            placement,
            "--service-connect-configuration",
            sc,
        ]);
    }
    let b_tasks = api.wait_for(120, "b's 2 tasks RUNNING", || {
        let p = service_tasks(&api, "b");
        (p.len() == 2).then_some(p)
    });
    let mut ips: Vec<String> = b_tasks
        .iter()
        .map(|(t, _)| private_ip(&describe_task(&api, t)))
        .collect();
    ips.sort();
    let a_task = api.wait_for(120, "a's task RUNNING", || {
        service_tasks(&api, "a").into_iter().next()
    });
    assert_eq!(a_task.1, boxes[0].arn());
    let a_id = id_of(&a_task.0);
    // From a's task on box 0, b.sc:9000 is answered by b's tasks on both boxes.
    let got = api.wait_for(90, "both of b's tasks answering at b.sc:9000", || {
        let text = box_logs(&boxes[0], &a_id);
        let mut bodies: Vec<String> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("GOT "))
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        bodies.sort();
        bodies.dedup();
        (bodies == ips).then_some(bodies)
    });
    eprintln!("b.sc:9000 from box 0 answered by {got:?}");

    // b scaled to 1: the task that goes leaves the alias; the one left answers.
    api.aws_json(&["update-service", "--service", "b", "--desired-count", "1"]);
    let left = api.wait_for(60, "b's 1 task", || {
        let p = service_tasks(&api, "b");
        (p.len() == 1).then_some(p)
    });
    let left_ip = private_ip(&describe_task(&api, &left[0].0));
    let mark = box_logs(&boxes[0], &a_id).lines().count();
    api.wait_for(30, "only b's remaining task answering", || {
        let text = box_logs(&boxes[0], &a_id);
        let recent: Vec<String> = text
            .lines()
            .skip(mark + 3)
            .filter_map(|l| l.trim().strip_prefix("GOT "))
            .map(|l| l.trim().to_string())
            .collect();
        (recent.len() >= 6 && recent.iter().all(|b| *b == left_ip)).then_some(())
    });

    for name in ["a", "b"] {
        api.aws_json(&["delete-service", "--service", name, "--force"]);
    }
    api.wait_for(60, "no service task RUNNING", || {
        (service_tasks(&api, "a").is_empty() && service_tasks(&api, "b").is_empty()).then_some(())
    });
    let ids: Vec<String> = b_tasks
        .iter()
        .map(|(t, _)| id_of(t))
        .chain([a_id])
        .collect();
    for b in boxes.iter_mut() {
        let st = b.signal("-TERM").unwrap();
        assert!(st.success(), "{st:?}");
    }
    for b in &boxes {
        assert_box_clean(b, &ids);
        // The alias's listener went with the agent.
        let out = b
            .exec("ss")
            .args(["-Htln", "sport = :9000"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "",
            "{}",
            b.name
        );
    }
}

/// A revision of family `netbox-bg` answering `/` with `version` and an id of the task's
/// own.
fn versioned_web(version: &str) -> Value {
    let script = format!(
        "busybox mkdir -p /www && echo {version} $(busybox cat /proc/sys/kernel/random/uuid) \
         > /www/index.html && exec busybox httpd -f -p 8080 -h /www"
    );
    json!({
        "family": "netbox-bg",
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

/// An HTTP listener of `lb` on a free port whose rule 1 forwards every path to `tg`:
/// (port, rule ARN).
fn listener_rule(api: &Api, lb: &str, tg: &str) -> (u16, String) {
    common::elb::listener_with_rule(api, lb, &json!([{"Type": "forward", "TargetGroupArn": tg}]))
}

/// A BLUE_GREEN service of 2 tasks spread over 2 boxes behind the leader's load balancer
/// (docs/load-balancing.md "Blue/green deployments", "Cluster mode"): the leader's
/// scheduler starts the green tasks on the boxes, flips production to them with no
/// request lost (a client on the host asking all along), and stops the blue tasks after
/// the bake time (1 minute at a 5 s period: 5 s).
#[test]
fn a_blue_green_deployment_across_two_boxes_flips_production_with_no_request_lost() {
    let mut lan = Lan::new();
    let etcd = Etcd::start_for(&[&lan.gateway.to_string()]);
    let (api, mut boxes) = cluster_env(
        &mut lan,
        &etcd,
        &[],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
        2,
        5,
        false,
    );
    let _routes = HostRoutes::to(&boxes);
    let alb = common::elb::create_alb(&api, "cluster-bg");
    let blue = common::elb::http_target_group(&api, "cluster-bg-blue", 2);
    let green = common::elb::http_target_group(&api, "cluster-bg-green", 2);
    let (prod_port, prod_rule) = listener_rule(&api, &alb.arn, &blue);
    let (_, test_rule) = listener_rule(&api, &alb.arn, &green);
    register(&api, "bg1.json", &versioned_web("v1"));
    register(&api, "bg2.json", &versioned_web("v2"));
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    let lbs = json!([{"targetGroupArn": blue, "containerName": "main", "containerPort": 8080,
        "advancedConfiguration": {"alternateTargetGroupArn": green,
            "productionListenerRule": prod_rule, "testListenerRule": test_rule,
            "roleArn": "arn:aws:iam::000000000000:role/ecsInfrastructureRole"}}]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "bg",
        "--task-definition",
        "netbox-bg:1",
        "--desired-count",
        "2",
        "--launch-type",
        "EC2",
        "--placement-strategy",
        "type=spread,field=instanceId",
        "--deployment-configuration",
        r#"{"strategy":"BLUE_GREEN","bakeTimeInMinutes":1}"#,
        "--load-balancers",
        &lbs.to_string(),
    ]);
    let first = api.wait_for(180, "the first deployment completed", || {
        let d = api.service("default", "bg")["deployments"].clone();
        (d.as_array().unwrap().len() == 1 && d[0]["rolloutState"] == "COMPLETED")
            .then(|| d[0]["id"].as_str().unwrap().to_string())
    });
    let blue_tasks = service_tasks(&api, "bg");
    let on: std::collections::BTreeSet<&String> = blue_tasks.iter().map(|(_, ci)| ci).collect();
    assert_eq!(on.len(), 2, "blue is on both boxes: {blue_tasks:?}");
    api.wait_for(90, "2 healthy blue targets", || {
        (healthy_targets(&api, &blue).len() == 2).then_some(())
    });

    // A client on the host asking production all along the deployment.
    let client = common::elb::Client::start(&api, &alb.ip, &[prod_port]);
    let updated = api.aws_json(&[
        "update-service",
        "--service",
        "bg",
        "--task-definition",
        "netbox-bg:2",
    ]);
    let second = updated["service"]["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    api.wait_for(240, "the blue/green deployment completed", || {
        let d = api.service("default", "bg")["deployments"].clone();
        (d.as_array().unwrap().len() == 1
            && d[0]["id"] == second.as_str()
            && d[0]["rolloutState"] == "COMPLETED")
            .then_some(())
    });
    let done_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let answers = client.finish();
    let version = |b: &str| b.split_whitespace().next().unwrap_or("").to_string();
    let lost: Vec<_> = answers.iter().filter(|a| a.2 != "200").collect();
    let flip = answers
        .iter()
        .position(|a| version(&a.3) == "v2")
        .expect("production flipped to green");
    eprintln!(
        "production across 2 boxes: {} requests, {} failed; flip after {} answers from blue",
        answers.len(),
        lost.len(),
        flip
    );
    assert!(lost.is_empty(), "{lost:?}");
    assert!(flip > 0 && answers[..flip].iter().all(|a| version(&a.3) == "v1"));
    assert!(
        answers[flip..].iter().all(|a| version(&a.3) == "v2"),
        "production flipped all at once"
    );
    let flip_at = answers[flip].0;
    // Green answered from both boxes' tasks (the bodies name the task).
    let green_bodies: std::collections::BTreeSet<&str> =
        answers[flip..].iter().map(|a| a.3.as_str()).collect();
    assert_eq!(green_bodies.len(), 2, "{green_bodies:?}");
    let green_arns = api.aws_json(&["list-tasks", "--started-by", &second]);
    let green_tasks: Vec<(String, String)> = green_arns["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let t = describe_task(&api, a.as_str().unwrap());
            (
                a.as_str().unwrap().to_string(),
                t["containerInstanceArn"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let on: std::collections::BTreeSet<&String> = green_tasks.iter().map(|(_, ci)| ci).collect();
    assert_eq!(
        (green_tasks.len(), on.len()),
        (2, 2),
        "green is on both boxes: {green_tasks:?}"
    );
    // Blue stopped after the bake time.
    let stopped = api.aws_json(&[
        "list-tasks",
        "--started-by",
        &first,
        "--desired-status",
        "STOPPED",
    ]);
    let arns: Vec<&str> = stopped["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(arns.len(), 2, "{stopped}");
    for arn in arns {
        let t = describe_task(&api, arn);
        let stopping = t["stoppingAt"].as_f64().unwrap();
        eprintln!(
            "a blue task stopping {:.1} s after the flip",
            stopping - flip_at
        );
        assert!(stopping - flip_at >= 4.0, "{t:#}");
        assert!(stopping <= done_at);
    }
    let prod = elbv2(&api, &["describe-rules", "--rule-arns", &prod_rule]);
    let action = &prod["Rules"][0]["Actions"][0];
    let forwarded_to: Vec<&str> = match action["ForwardConfig"]["TargetGroups"].as_array() {
        Some(l) => l
            .iter()
            .filter(|g| g["Weight"].as_i64().unwrap_or(1) > 0)
            .map(|g| g["TargetGroupArn"].as_str().unwrap())
            .collect(),
        None => vec![action["TargetGroupArn"].as_str().unwrap()],
    };
    assert_eq!(forwarded_to, [green.as_str()], "{prod:#}");

    // Cleaned up: the service scaled to 0 and deleted, the agents stopped, nothing left.
    let ids: Vec<String> = blue_tasks
        .iter()
        .chain(green_tasks.iter())
        .map(|(t, _)| id_of(t))
        .collect();
    api.aws_json(&["update-service", "--service", "bg", "--desired-count", "0"]);
    api.wait_for(60, "no service task RUNNING", || {
        service_tasks(&api, "bg").is_empty().then_some(())
    });
    api.aws_json(&["delete-service", "--service", "bg"]);
    for b in boxes.iter_mut() {
        let st = b.signal("-TERM").unwrap();
        assert!(st.success(), "{st:?}");
    }
    for b in &boxes {
        assert_box_clean(b, &ids);
    }
}

/// A bridge-mode web server answering `/` with an id of its own, on container port 8080
/// published on a host port chosen at launch (`hostPort` 0).
fn bridge_web() -> Value {
    let script = "busybox mkdir -p /www && cat /proc/sys/kernel/random/uuid > /www/index.html && exec busybox httpd -f -p 8080 -h /www";
    json!({
        "family": "netbox-bridgeweb",
        "networkMode": "bridge",
        "requiresCompatibilities": ["EC2"],
        "containerDefinitions": [{
            "name": "main",
            "image": "public.ecr.aws/docker/library/busybox:1.36",
            "memory": 64,
            "command": ["sh", "-c", script],
            "portMappings": [{"containerPort": 8080, "hostPort": 0}],
            "stopTimeout": 2,
            "essential": true
        }]
    })
}

#[test]
fn bridge_tasks_on_two_boxes_register_in_an_instance_target_group_as_their_own_box() {
    let mut lan = Lan::new();
    let etcd = Etcd::start_for(&[&lan.gateway.to_string()]);
    let (api, mut boxes) = cluster(&mut lan, &etcd, &[], 2, 5, false);

    // Each box is a container instance with an EC2 instance id of its own.
    let arns = api.instances_listed(None);
    let mut args = vec!["describe-container-instances", "--container-instances"];
    args.extend(arns.iter().map(String::as_str));
    let described = api.aws_json(&args);
    let mut instance_ids: Vec<String> = described["containerInstances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ec2InstanceId"].as_str().unwrap().to_string())
        .collect();
    instance_ids.sort();
    instance_ids.dedup();
    assert_eq!(instance_ids.len(), 2, "{described:#}");
    assert!(
        instance_ids
            .iter()
            .all(|i| i.len() == 19 && i.starts_with("i-")),
        "{instance_ids:?}"
    );

    let lb = common::elb::create_alb(&api, "cluster-bridge");
    let tg = common::elb::target_group_of(&api, "cluster-bridge", 2, "instance");
    let port = common::util::free_port();
    common::elb::http_listener(&api, &lb.arn, &port.to_string(), &tg);
    register(&api, "bridgeweb.json", &bridge_web());
    let tasks =
        common::cluster::two_spread_tasks_behind(&api, "bridgeweb", "netbox-bridgeweb", &tg);

    // Each task registered as its own box's instance id and its host port; healthy.
    let want: Vec<(String, u64)> = {
        let mut v: Vec<(String, u64)> = tasks
            .iter()
            .map(|(t, _)| {
                let d = describe_task(&api, t);
                let ci = d["containerInstanceArn"].as_str().unwrap();
                let at = described["containerInstances"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["containerInstanceArn"] == ci)
                    .unwrap_or_else(|| panic!("{ci} not described"));
                let hp = d["containers"][0]["networkBindings"][0]["hostPort"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no host port: {d:#}"));
                (at["ec2InstanceId"].as_str().unwrap().to_string(), hp)
            })
            .collect();
        v.sort();
        v
    };
    let got = api.wait_for(90, "2 healthy instance targets", || {
        let h = elbv2(&api, &["describe-target-health", "--target-group-arn", &tg]);
        let mut v: Vec<(String, u64)> = h["TargetHealthDescriptions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["TargetHealth"]["State"] == "healthy")
            .map(|d| {
                (
                    d["Target"]["Id"].as_str().unwrap().to_string(),
                    d["Target"]["Port"].as_u64().unwrap(),
                )
            })
            .collect();
        v.sort();
        (v.len() == 2).then_some(v)
    });
    assert_eq!(got, want);
    let ids: Vec<&String> = got.iter().map(|(i, _)| i).collect();
    assert_eq!(
        ids,
        instance_ids.iter().collect::<Vec<_>>(),
        "one on each box"
    );

    // Traffic through the listener reaches the tasks of both boxes.
    let url = format!("http://{}:{port}/", lb.ip);
    let mut bodies = Vec::new();
    let mut answered = 0;
    for _ in 0..8 {
        let out = std::process::Command::new("curl")
            .args(["-s", "--noproxy", "*", "-m", "5", "-f", &url])
            .output()
            .unwrap();
        assert!(out.status.success(), "{url}: {out:?}");
        answered += 1;
        bodies.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    bodies.sort();
    bodies.dedup();
    eprintln!(
        "across boxes: {answered} requests answered by {} tasks",
        bodies.len()
    );
    assert_eq!(bodies.len(), 2, "{bodies:?}");

    api.aws_json(&["delete-service", "--service", "bridgeweb", "--force"]);
    api.wait_for(90, "bridgeweb INACTIVE", || {
        (api.service("default", "bridgeweb")["status"] == "INACTIVE").then_some(())
    });
    for b in boxes.iter_mut() {
        let st = b.signal("-TERM").unwrap();
        assert!(st.success(), "{st:?}");
    }
    let task_ids: Vec<String> = tasks.iter().map(|(t, _)| id_of(t)).collect();
    for b in &boxes {
        assert_box_clean(b, &task_ids);
    }
}

/// Each target of `tg` and its state, as `api` describes them.
fn target_states(api: &Api, tg: &str) -> Vec<(String, String)> {
    let h = elbv2(api, &["describe-target-health", "--target-group-arn", tg]);
    h["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["Target"]["Id"].as_str().unwrap().to_string(),
                d["TargetHealth"]["State"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Seconds since the epoch.
fn epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The service's event `word` (e.g. `deregistered`) newest first: their times.
fn event_times(api: &Api, service: &str, word: &str) -> Vec<f64> {
    let s = api.service("default", service);
    s["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["message"].as_str().unwrap_or("").contains(word))
        .map(|e| e["createdAt"].as_f64().unwrap())
        .collect()
}

/// A service of awsvpc tasks on two boxes behind a load balancer, asked by its DNS name
/// all along by a keep-alive client on the host (docs/load-balancing.md "Cluster mode"):
/// (a) scaled in from 3 tasks to 1, its stopped tasks' targets go `draining` first and the
/// tasks stop only after the deregistration delay, with no request failed; (b) a box with
/// a registered target cut off (its link down): its task is declared lost after the lease
/// and the grace (`--lost-instance-after 1`), its target is deregistered (drains, then is
/// gone), the service replaces it on the live box and every request is answered there
/// again; back, the box stops what was replaced. Nothing left on either box.
#[test]
fn a_load_balanced_service_on_two_boxes_drains_on_scale_in_and_deregisters_a_lost_boxs_targets() {
    const DELAY: f64 = 4.0;
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
    let _routes = HostRoutes::to(&boxes);
    let lb = common::elb::create_alb(&api, "cluster-drain");
    let dns = lb.dns.to_ascii_lowercase();
    let tg = common::elb::http_target_group(&api, "cluster-drain", DELAY as u32);
    let listener = common::elb::http_listener(&api, &lb.arn, "80", &tg);
    // The client asks by the name, at the address the serve's hosts file gives it.
    let hosts = Path::new(&api.mf.env_value("MINIFARGATE_HOSTS_FILE").unwrap()).to_path_buf();
    let ip = api.wait_for(10, "the load balancer's name in the hosts file", || {
        let text = std::fs::read_to_string(&hosts).ok()?;
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(dns.as_str()))?;
        Some(line.split_whitespace().next()?.to_string())
    });
    assert_eq!(ip, lb.ip);
    register(&api, "lbweb.json", &addressed_web());
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "drain",
        "--task-definition",
        "netbox-lbweb",
        "--desired-count",
        "3",
        "--launch-type",
        "EC2",
        "--placement-strategy",
        "type=spread,field=instanceId",
        "--load-balancers",
        &format!("targetGroupArn={tg},containerName=main,containerPort=8080"),
    ]);
    // Task address → the box (container instance) it runs on.
    let mut box_of: std::collections::BTreeMap<String, String> = Default::default();
    let mut all_ids: Vec<String> = Vec::new();
    let mut learn = |api: &Api, box_of: &mut std::collections::BTreeMap<String, String>| {
        for (t, ci) in service_tasks(api, "drain") {
            let ip = private_ip(&describe_task(api, &t));
            box_of.insert(ip, ci);
            if !all_ids.contains(&id_of(&t)) {
                all_ids.push(id_of(&t));
            }
        }
    };
    let three = api.wait_for(150, "3 healthy targets", || {
        let h = healthy_targets(&api, &tg);
        (h.len() == 3 && service_tasks(&api, "drain").len() == 3).then_some(h)
    });
    learn(&api, &mut box_of);
    let on: std::collections::BTreeSet<&String> = box_of.values().collect();
    assert_eq!(on.len(), 2, "the 3 tasks are on both boxes: {box_of:?}");

    // (a) Scale-in from 3 to 1 under traffic.
    let client = common::elb::Client::start_named(&api, &dns, &lb.ip, &[80]);
    std::thread::sleep(Duration::from_secs(1));
    let t0 = epoch();
    api.aws_json(&[
        "update-service",
        "--service",
        "drain",
        "--desired-count",
        "1",
    ]);
    // Each target's states as seen, with the first time each was seen.
    let mut seen: Vec<(f64, String, String)> = Vec::new();
    api.wait_for(90, "1 target left", || {
        let now = epoch();
        for (id, state) in target_states(&api, &tg) {
            if !seen.iter().any(|(_, i, s)| *i == id && *s == state) {
                seen.push((now, id, state));
            }
        }
        let left = target_states(&api, &tg);
        (left.len() == 1 && left[0].1 == "healthy" && service_tasks(&api, "drain").len() == 1)
            .then_some(())
    });
    let answers = client.finish();
    let failed: Vec<_> = answers.iter().filter(|a| a.2 != "200").collect();
    let scale_in_s = epoch() - t0;
    let answered_by: std::collections::BTreeSet<&str> =
        answers.iter().map(|a| a.3.as_str()).collect();
    eprintln!(
        "scale-in 3 -> 1 across 2 boxes: {} requests by name, {} failed, answered by {:?}, \
         done in {scale_in_s:.1} s; target states seen: {seen:?}",
        answers.len(),
        failed.len(),
        answered_by
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert!(answers.len() > 100, "{} requests", answers.len());
    let kept = &target_states(&api, &tg)[0].0;
    let gone: Vec<&String> = three.iter().filter(|t| *t != kept).collect();
    assert_eq!(gone.len(), 2);
    let deregistered = event_times(&api, "drain", "deregistered 2 targets");
    assert_eq!(
        deregistered.len(),
        1,
        "{:#}",
        api.service("default", "drain")
    );
    for ip in &gone {
        // Seen draining, then its task stopping after the delay.
        let draining = seen
            .iter()
            .find(|(_, i, s)| i == *ip && s == "draining")
            .unwrap_or_else(|| panic!("{ip} never seen draining: {seen:?}"))
            .0;
        let task =
            stopped_drain_task_at(&api, ip).unwrap_or_else(|| panic!("no stopped task at {ip}"));
        let stopping = task["stoppingAt"].as_f64().unwrap();
        eprintln!(
            "{ip} (on {}): draining seen at +{:.1} s, deregistered at +{:.1} s, its task \
             stopping at +{:.1} s",
            box_of[*ip],
            draining - t0,
            deregistered[0] - t0,
            stopping - t0
        );
        assert!(
            stopping > draining,
            "{ip} stopped before it was seen draining"
        );
        assert!(
            stopping - deregistered[0] >= DELAY - 0.5,
            "{ip}'s task stopped {:.1} s after its deregistration (delay {DELAY} s)",
            stopping - deregistered[0]
        );
    }

    // (b) Back to 2, one on each box; then one box is cut off.
    api.aws_json(&[
        "update-service",
        "--service",
        "drain",
        "--desired-count",
        "2",
    ]);
    api.wait_for(120, "2 healthy targets on both boxes", || {
        learn(&api, &mut box_of);
        let h = healthy_targets(&api, &tg);
        let on: std::collections::BTreeSet<&String> =
            h.iter().filter_map(|t| box_of.get(t)).collect();
        (h.len() == 2 && on.len() == 2).then_some(())
    });
    let two = healthy_targets(&api, &tg);
    let lost = boxes
        .iter()
        .position(|b| box_of[&two[0]] == b.arn())
        .unwrap();
    let (dead_ip, live_ip) = (two[0].clone(), two[1].clone());
    let live_box = boxes[1 - lost].arn();
    let client = common::elb::Client::start_named(&api, &dns, &lb.ip, &[80]);
    std::thread::sleep(Duration::from_secs(1));
    let cut = epoch();
    boxes[lost].link(false);
    let mut dead_states: Vec<(f64, String)> = Vec::new();
    api.wait_for(
        120,
        "the lost box's target gone and 2 healthy on the live box",
        || {
            let now = epoch();
            let states = target_states(&api, &tg);
            match states.iter().find(|(i, _)| *i == dead_ip) {
                Some((_, s)) if dead_states.last().map(|(_, l)| l) != Some(s) => {
                    dead_states.push((now, s.clone()))
                }
                Some(_) => {}
                None if dead_states.last().map(|(_, l)| l.as_str()) != Some("gone") => {
                    dead_states.push((now, "gone".into()))
                }
                None => {}
            }
            if states.iter().any(|(i, _)| *i == dead_ip) {
                return None;
            }
            learn(&api, &mut box_of);
            let healthy = healthy_targets(&api, &tg);
            (healthy.len() == 2 && healthy.iter().all(|t| box_of.get(t) == Some(&live_box)))
                .then_some(())
        },
    );
    let recovered = epoch();
    // Traffic on the live box's two tasks for a while.
    std::thread::sleep(Duration::from_secs(3));
    let answers = client.finish();
    let failed: Vec<_> = answers.iter().filter(|a| a.2 != "200").collect();
    let last_failed = failed.iter().map(|a| a.0).fold(cut, f64::max);
    let after: Vec<_> = answers.iter().filter(|a| a.0 > recovered).collect();
    eprintln!(
        "box {lost} cut off: {} requests, {} failed, the last failure at +{:.1} s; its target's \
         states {:?}; gone and 2 healthy on the live box at +{:.1} s; {} requests after, all \
         answered by {:?}",
        answers.len(),
        failed.len(),
        last_failed - cut,
        dead_states
            .iter()
            .map(|(t, s)| format!("{s} +{:.1} s", t - cut))
            .collect::<Vec<_>>(),
        recovered - cut,
        after.len(),
        after
            .iter()
            .map(|a| a.3.as_str())
            .collect::<std::collections::BTreeSet<_>>()
    );
    assert!(after.len() > 20, "{} requests after", after.len());
    assert!(after.iter().all(|a| a.2 == "200"), "{after:?}");
    assert!(after.iter().all(|a| box_of.get(&a.3) == Some(&live_box)));
    assert!(
        after.iter().any(|a| a.3 == live_ip) && after.iter().any(|a| a.3 != live_ip),
        "both live tasks answer"
    );
    // The lost task: STOPPED as lost.
    let lost_task = stopped_drain_task_at(&api, &dead_ip).unwrap();
    let reason = lost_task["stoppedReason"].as_str().unwrap_or("");
    eprintln!("the lost box's task: {reason}");
    assert!(reason.contains("lost"), "{lost_task:#}");
    // Back: the box stops the task that was replaced.
    boxes[lost].link(true);
    let dead_id = id_of(lost_task["taskArn"].as_str().unwrap());
    api.wait_for(60, "the returned box stopping its replaced task", || {
        (local_status(&boxes[lost], &dead_id).0 == "STOPPED").then_some(())
    });

    // Cleaned up: no task, no target, the agents stopped, nothing left on either box.
    api.aws_json(&[
        "update-service",
        "--service",
        "drain",
        "--desired-count",
        "0",
    ]);
    api.wait_for(60, "no service task RUNNING and no target", || {
        (service_tasks(&api, "drain").is_empty() && target_states(&api, &tg).is_empty())
            .then_some(())
    });
    api.aws_json(&["delete-service", "--service", "drain"]);
    elbv2(&api, &["delete-listener", "--listener-arn", &listener]);
    elbv2(
        &api,
        &["delete-load-balancer", "--load-balancer-arn", &lb.arn],
    );
    elbv2(&api, &["delete-target-group", "--target-group-arn", &tg]);
    for b in boxes.iter_mut() {
        let st = b.signal("-TERM").unwrap();
        assert!(st.success(), "{st:?}");
    }
    for b in &boxes {
        assert_box_clean(b, &all_ids);
    }
}
