//! Hollow boxes (issue 76; docs/cluster.md "Scale"): `agent --simulate N` runs N boxes in
//! one process, each joined with the token through serve's port for boxes as a real box
//! joins, beside a real agent in one cluster: a service's tasks placed on both kinds,
//! DescribeContainerInstances showing them, and a hollow process killed (SIGKILL, by its
//! pid): its instances lost and their tasks replaced. A real etcd with TLS and users, real
//! serve and agents, the real AWS CLI.

use crate::cluster_join::{control_plane_with, token};
use crate::common;

use common::cli::Mf;
use common::cluster::{
    Agent, SLEEPER, describe, describe_task, instance_arn, register, service_tasks,
};
use std::time::Duration;

/// Starts `n` hollow boxes named `NAME-hollow-<i>` (attribute kind=hollow) joining with
/// `token` at `server`, with leases of 2 s; their instance ARNs once each joined.
fn hollow(server: &str, token: &str, name: &str, n: usize) -> (Agent, Vec<String>) {
    let count = n.to_string();
    let a = Agent::start_through(
        Mf::new(),
        server,
        2,
        &[
            "--token",
            token,
            "--name",
            name,
            "--simulate",
            &count,
            "--attribute",
            "kind=hollow",
        ],
    );
    let root = a.mf.root.clone();
    common::util::wait_until("the hollow boxes joined", Duration::from_secs(60), || {
        (0..n)
            .all(|i| root.join(format!("hollow/{i}/agent/instance-id")).exists())
            .then_some(())
    });
    let arns = (0..n)
        .map(|i| instance_arn(&root.join(format!("hollow/{i}"))))
        .collect();
    (a, arns)
}

#[test]
fn hollow_and_real_boxes_share_a_cluster_and_a_killed_hollow_process_s_tasks_are_replaced() {
    let Some((etcd, _, _, server, api)) = control_plane_with(&["--lost-instance-after", "1"])
    else {
        return;
    };
    let t = token(&etcd, &["--uses", "5"]);
    let mut mf = Mf::new();
    mf.mirror_config("public.ecr.aws", &api.registry().host(), true);
    let real = Agent::start_through(
        mf,
        &server,
        5,
        &[
            "--token",
            &t,
            "--name",
            "real-1",
            "--attribute",
            "kind=real",
        ],
    );
    let mut procs = [
        hollow(&server, &t, "sim-a", 2),
        hollow(&server, &t, "sim-b", 2),
    ];
    let real_arn = real.arn();
    api.wait_for(60, "the 5 instances listed", || {
        (api.instances_listed(None).len() == 5).then_some(())
    });

    // A hollow box as DescribeContainerInstances shows it: connected, its simulated
    // resources and its attribute, its host name its box name.
    let ci = describe(&api, &procs[0].1[0]);
    assert_eq!(ci["agentConnected"], true, "{ci:#}");
    assert_eq!(ci["status"], "ACTIVE", "{ci:#}");
    let cpu = common::cluster::resource(&ci, "registeredResources", "CPU");
    let memory = common::cluster::resource(&ci, "registeredResources", "MEMORY");
    assert_eq!((cpu, memory), (2048, 4096), "{ci:#}");
    let attrs = ci["attributes"].as_array().unwrap();
    assert!(
        attrs
            .iter()
            .any(|x| x["name"] == "kind" && x["value"] == "hollow"),
        "{ci:#}"
    );

    // A service spread over the two kinds, one task a box: on the real box and on hollow
    // ones, all RUNNING.
    register(&api, "sleeper.json", SLEEPER);
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "mix",
        "--task-definition",
        "cluster-sleeper",
        "--desired-count",
        "3",
        "--launch-type",
        "EC2",
        "--placement-constraints",
        "type=distinctInstance",
        "--placement-strategy",
        "type=spread,field=attribute:kind",
    ]);
    let placed = api.wait_for(120, "3 service tasks RUNNING", || {
        let p = service_tasks(&api, "mix");
        (p.len() == 3).then_some(p)
    });
    let on = |arns: &[String]| placed.iter().filter(|(_, i)| arns.contains(i)).count();
    assert_eq!(on(std::slice::from_ref(&real_arn)), 1, "{placed:?}");
    assert_eq!(on(&procs[0].1) + on(&procs[1].1), 2, "{placed:?}");
    // A hollow box's task says it ran nothing.
    let (hollow_task, _) = placed.iter().find(|(_, i)| *i != real_arn).unwrap().clone();
    let d = describe_task(&api, &hollow_task);
    assert!(d.to_string().contains("run by a hollow box"), "{d:#}");
    let ci = describe(&api, &real_arn);
    assert_eq!(ci["runningTasksCount"], 1, "{ci:#}");

    // The hollow process holding one of them killed: its boxes disconnected, then lost;
    // their tasks stopped and replaced on the boxes left.
    let k = usize::from(on(&procs[0].1) == 0);
    let (gone, arns) = &mut procs[k];
    let lost: Vec<String> = placed
        .iter()
        .filter(|(_, i)| arns.contains(i))
        .map(|(t, _)| t.clone())
        .collect();
    assert!(!lost.is_empty());
    gone.kill();
    for arn in arns.iter() {
        common::cluster::until_connected(&api, arn, false, Duration::from_secs(30));
    }
    for task in &lost {
        api.wait_for(30, "the lost box's task STOPPED", || {
            (describe_task(&api, task)["lastStatus"] == "STOPPED").then_some(())
        });
    }
    let arns = arns.clone();
    let now = api.wait_for(
        60,
        "3 service tasks RUNNING again, none on the lost boxes",
        || {
            let p = service_tasks(&api, "mix");
            (p.len() == 3 && p.iter().all(|(_, i)| !arns.contains(i))).then_some(p)
        },
    );
    assert_eq!(
        now.iter().filter(|(_, i)| *i == real_arn).count(),
        1,
        "{now:?}"
    );
}
