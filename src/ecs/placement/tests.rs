use super::*;

fn cand(n: usize) -> Candidate {
    let mut attributes = BTreeMap::new();
    attributes.insert("ecs.os-type".to_string(), Some("linux".to_string()));
    Candidate {
        arn: format!("arn:aws:ecs:us-east-1:000000000000:container-instance/c/i{n}"),
        id: format!("i{n}"),
        ec2_instance_id: format!("box-{n}"),
        attributes,
        active: true,
        connected: true,
        agent_version: "1.4.0".into(),
        registered_at_ms: 0,
        remaining_cpu: 4096,
        remaining_memory: 8192,
        used_ports: BTreeSet::from([22]),
        used_udp_ports: BTreeSet::new(),
        tasks: Vec::new(),
    }
}

fn need(memory: i64) -> Need {
    Need {
        cpu: 0,
        memory,
        ports: Vec::new(),
        udp_ports: Vec::new(),
        group: "family:web".into(),
    }
}

fn strategy(kind: &str, field: Option<&str>) -> PlacementStrategy {
    PlacementStrategy {
        kind: Some(kind.into()),
        field: field.map(Into::into),
    }
}

fn constraint(kind: &str, expression: Option<&str>) -> PlacementConstraint {
    PlacementConstraint {
        kind: Some(kind.into()),
        expression: expression.map(Into::into),
    }
}

fn plan(c: &[PlacementConstraint], s: &[PlacementStrategy]) -> Plan {
    Plan::parse(c, s).unwrap()
}

/// A fixed sequence of "random" numbers.
fn seq() -> impl FnMut() -> u64 {
    let mut n = 0u64;
    move || {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        n >> 33
    }
}

fn placed(r: &[Placement]) -> Vec<usize> {
    r.iter().map(|p| *p.as_ref().unwrap()).collect()
}

fn per_instance(cands: &[Candidate]) -> Vec<usize> {
    cands.iter().map(|c| c.tasks.len()).collect()
}

#[test]
fn spread_on_instance_id_keeps_max_minus_min_at_most_one() {
    for field in ["instanceId", "host"] {
        let mut cands: Vec<_> = (0..3).map(cand).collect();
        let p = plan(&[], &[strategy("spread", Some(field))]);
        let mut rng = seq();
        for _ in 0..9 {
            let r = place(&mut cands, &need(10), &p, 1, &mut rng).unwrap();
            assert!(r[0].is_ok());
            let n = per_instance(&cands);
            assert!(
                n.iter().max().unwrap() - n.iter().min().unwrap() <= 1,
                "{n:?}"
            );
        }
        assert_eq!(per_instance(&cands), [3, 3, 3]);
    }
}

#[test]
fn spread_on_an_attribute_balances_its_values_and_counts_missing_as_a_bucket() {
    let mut cands: Vec<_> = (0..3).map(cand).collect();
    for (c, zone) in cands.iter_mut().zip(["a", "a", "b"]) {
        c.attributes.insert("zone".into(), Some(zone.into()));
    }
    let p = plan(&[], &[strategy("spread", Some("attribute:zone"))]);
    let r = place(&mut cands, &need(10), &p, 9, &mut seq()).unwrap();
    assert!(r.iter().all(Result::is_ok));
    let n = per_instance(&cands);
    // Zone a (two instances) and zone b (one) hold 4 or 5 tasks each.
    let (a, b) = (n[0] + n[1], n[2]);
    assert!(a.abs_diff(b) <= 1, "{n:?}");

    // An instance without the attribute is a bucket of its own.
    let mut cands: Vec<_> = (0..3).map(cand).collect();
    cands[0].attributes.insert("zone".into(), Some("a".into()));
    cands[1].attributes.insert("zone".into(), Some("b".into()));
    let r = place(&mut cands, &need(10), &p, 9, &mut seq()).unwrap();
    assert!(r.iter().all(Result::is_ok));
    assert_eq!(per_instance(&cands), [3, 3, 3]);
}

#[test]
fn spread_counts_only_the_tasks_group() {
    let mut cands: Vec<_> = (0..2).map(cand).collect();
    for _ in 0..5 {
        cands[0].tasks.push(Placed {
            group: "family:other".into(),
        });
    }
    cands[1].tasks.push(Placed {
        group: "family:web".into(),
    });
    let p = plan(&[], &[strategy("spread", Some("instanceId"))]);
    let r = place(&mut cands, &need(10), &p, 1, &mut seq()).unwrap();
    assert_eq!(placed(&r), [0]);
}

#[test]
fn binpack_fills_one_instance_before_the_next() {
    let mut cands: Vec<_> = (0..3).map(cand).collect();
    let p = plan(&[], &[strategy("binpack", Some("memory"))]);
    // 8192 MiB each: four tasks of 2048 fill one instance.
    let r = place(&mut cands, &need(2048), &p, 6, &mut seq()).unwrap();
    let at = placed(&r);
    assert!(at[..4].iter().all(|&i| i == at[0]), "{at:?}");
    assert!(at[4..].iter().all(|&i| i == at[4] && i != at[0]), "{at:?}");
    assert_eq!(cands[at[0]].remaining_memory, 0);

    // On cpu: the instance with the least CPU left that still fits.
    let mut cands: Vec<_> = (0..3).map(cand).collect();
    cands[1].remaining_cpu = 1024;
    cands[2].remaining_cpu = 100;
    let mut n = need(10);
    n.cpu = 512;
    let p = plan(&[], &[strategy("binpack", Some("cpu"))]);
    let r = place(&mut cands, &n, &p, 3, &mut seq()).unwrap();
    assert_eq!(placed(&r), [1, 1, 0]);
}

#[test]
fn random_lands_everywhere_eventually() {
    let mut cands: Vec<_> = (0..3).map(cand).collect();
    let p = plan(&[], &[strategy("random", None)]);
    let mut rng = seq();
    let r = place(&mut cands, &need(10), &p, 60, &mut rng).unwrap();
    let at = placed(&r);
    for i in 0..3 {
        assert!(at.contains(&i), "{at:?}");
    }
    // And with the real random source.
    let mut cands: Vec<_> = (0..3).map(cand).collect();
    let r = place(&mut cands, &need(10), &p, 60, &mut random).unwrap();
    assert!(per_instance(&cands).iter().all(|&n| n > 0), "{r:?}");
}

#[test]
fn distinct_instance_is_never_violated() {
    let mut cands: Vec<_> = (0..3).map(cand).collect();
    let p = plan(&[constraint("distinctInstance", None)], &[]);
    let r = place(&mut cands, &need(10), &p, 5, &mut seq()).unwrap();
    let mut at: Vec<usize> = r.iter().filter_map(|p| p.as_ref().ok().copied()).collect();
    at.sort_unstable();
    assert_eq!(at, [0, 1, 2]);
    for f in r.iter().filter_map(|p| p.as_ref().err()) {
        assert_eq!(f.len(), 3);
        assert!(f.iter().all(|f| f.reason == DISTINCT_INSTANCE), "{f:?}");
    }
    assert_eq!(r.iter().filter(|p| p.is_err()).count(), 2);
    // Another group's task does not count.
    let mut cands: Vec<_> = (0..1).map(cand).collect();
    cands[0].tasks.push(Placed {
        group: "service:other".into(),
    });
    assert!(place(&mut cands, &need(10), &p, 1, &mut seq()).unwrap()[0].is_ok());
}

#[test]
fn member_of_is_honoured_with_attributes_and_task_group() {
    let mut cands: Vec<_> = (0..3).map(cand).collect();
    cands[2].attributes.insert("gpu".into(), Some("yes".into()));
    let p = plan(&[constraint("memberOf", Some("attribute:gpu == yes"))], &[]);
    let r = place(&mut cands, &need(10), &p, 4, &mut seq()).unwrap();
    assert_eq!(placed(&r), [2, 2, 2, 2]);
    let p = plan(&[constraint("memberOf", Some("attribute:gpu == no"))], &[]);
    let r = place(&mut cands, &need(10), &p, 1, &mut seq()).unwrap();
    let f = r[0].as_ref().unwrap_err();
    assert_eq!(f.len(), 3);
    assert!(f.iter().all(|f| f.reason == MEMBER_OF), "{f:?}");

    // task:group: next to the cache's tasks only.
    let mut cands: Vec<_> = (0..3).map(cand).collect();
    cands[1].tasks.push(Placed {
        group: "service:cache".into(),
    });
    let p = plan(
        &[constraint("memberOf", Some("task:group == service:cache"))],
        &[strategy("spread", Some("instanceId"))],
    );
    let r = place(&mut cands, &need(10), &p, 3, &mut seq()).unwrap();
    assert_eq!(placed(&r), [1, 1, 1]);
}

#[test]
fn the_task_definition_s_member_of_constraints_apply_with_the_request_s() {
    use crate::taskdef::model::{PlacementConstraint as Defined, PlacementConstraintType};
    let defined = |e: &str| Defined {
        kind: Some(PlacementConstraintType::MemberOf),
        expression: Some(e.into()),
    };
    let mut cands: Vec<_> = (0..3).map(cand).collect();
    cands[1].attributes.insert("zone".into(), Some("a".into()));
    cands[2].attributes.insert("zone".into(), Some("a".into()));
    cands[2]
        .attributes
        .insert("disk".into(), Some("ssd".into()));
    // The request's alone would allow 1 and 2; the definition's keeps 2 only.
    let p = plan(&[constraint("memberOf", Some("attribute:zone == a"))], &[])
        .and_definition(&[defined("attribute:disk == ssd")])
        .unwrap();
    let r = place(&mut cands, &need(10), &p, 3, &mut seq()).unwrap();
    assert_eq!(placed(&r), [2, 2, 2]);
    // Unsatisfiable together: ECS's words on every instance.
    let p = Plan::parse(&[], &[])
        .unwrap()
        .and_definition(&[defined("attribute:disk == nvme")])
        .unwrap();
    let f = place(&mut cands, &need(10), &p, 1, &mut seq()).unwrap()[0]
        .clone()
        .unwrap_err();
    assert_eq!(f.len(), 3);
    assert!(f.iter().all(|f| f.reason == MEMBER_OF), "{f:?}");
    // One without a type constrains nothing; a bad expression names the definition's.
    let none = Defined {
        kind: None,
        expression: Some("attribute:disk == nvme".into()),
    };
    let p = Plan::parse(&[], &[])
        .unwrap()
        .and_definition(&[none])
        .unwrap();
    assert!(place(&mut cands, &need(10), &p, 1, &mut seq()).unwrap()[0].is_ok());
    let e = Plan::parse(&[], &[])
        .unwrap()
        .and_definition(&[defined("attribute:disk ==")])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("the task definition's placementConstraints[0].expression"),
        "{e}"
    );
}

#[test]
fn each_resource_failure_has_ecs_words() {
    let mut base = cand(0);
    base.used_udp_ports.insert(53);
    let p = plan(&[], &[]);
    type Change = fn(&mut Need);
    let cases: [(Change, &str); 5] = [
        (|n| n.cpu = 5000, RESOURCE_CPU),
        (|n| n.memory = 9000, RESOURCE_MEMORY),
        (|n| n.ports = vec![22], RESOURCE_PORTS),
        (|n| n.udp_ports = vec![53], RESOURCE_PORTS_UDP),
        (|n| n.ports = vec![8080], ""),
    ];
    for (change, want) in cases {
        let mut n = need(10);
        change(&mut n);
        let mut cands = vec![base.clone()];
        let r = place(&mut cands, &n, &p, 1, &mut seq()).unwrap();
        match &r[0] {
            Ok(_) => assert_eq!(want, "", "{n:?}"),
            Err(f) => assert_eq!(
                f,
                &vec![Failure {
                    arn: base.arn.clone(),
                    reason: want.into()
                }]
            ),
        }
    }
    // Count 3 where 2 fit: the third is a failure, and the first two took the memory.
    let mut cands = vec![base.clone()];
    let r = place(&mut cands, &need(4000), &p, 3, &mut seq()).unwrap();
    assert!(r[0].is_ok() && r[1].is_ok());
    assert_eq!(r[2].as_ref().unwrap_err()[0].reason, RESOURCE_MEMORY);
    assert_eq!(cands[0].remaining_memory, 192);
    // The same static port twice: the second is RESOURCE:PORTS.
    let mut cands = vec![base.clone()];
    let mut n = need(10);
    n.ports = vec![8080];
    let r = place(&mut cands, &n, &p, 2, &mut seq()).unwrap();
    assert_eq!(r[1].as_ref().unwrap_err()[0].reason, RESOURCE_PORTS);
}

#[test]
fn draining_or_disconnected_instances_are_never_chosen() {
    let mut cands: Vec<_> = (0..3).map(cand).collect();
    cands[0].active = false;
    cands[1].connected = false;
    let p = plan(&[], &[strategy("spread", Some("instanceId"))]);
    let r = place(&mut cands, &need(10), &p, 6, &mut seq()).unwrap();
    assert_eq!(placed(&r), [2; 6]);
    cands[2].remaining_memory = 0;
    let r = place(&mut cands, &need(10), &p, 1, &mut seq()).unwrap();
    let f = r[0].as_ref().unwrap_err();
    // The DRAINING one is no candidate at all; the disconnected one is AGENT.
    assert_eq!(
        f.iter().map(|f| f.reason.as_str()).collect::<Vec<_>>(),
        [AGENT, RESOURCE_MEMORY]
    );
    // No ACTIVE instance at all: RunTask's InvalidParameterException.
    cands[1].active = false;
    cands[2].active = false;
    assert_eq!(
        place(&mut cands, &need(10), &p, 1, &mut seq()).unwrap_err(),
        PlacementError::NoContainerInstances
    );
    assert_eq!(
        PlacementError::NoContainerInstances.to_string(),
        NO_CONTAINER_INSTANCES
    );
    assert!(matches!(
        place(&mut [], &need(10), &p, 1, &mut seq()),
        Err(PlacementError::NoContainerInstances)
    ));
}

#[test]
fn strategies_chain_later_ones_break_ties() {
    // Spread over zones, then binpack on memory inside the emptiest zone.
    let mut cands: Vec<_> = (0..4).map(cand).collect();
    for (c, zone) in cands.iter_mut().zip(["a", "a", "b", "b"]) {
        c.attributes.insert("zone".into(), Some(zone.into()));
    }
    cands[1].remaining_memory = 1000;
    cands[3].remaining_memory = 500;
    let p = plan(
        &[],
        &[
            strategy("spread", Some("attribute:zone")),
            strategy("binpack", Some("memory")),
        ],
    );
    let r = place(&mut cands, &need(100), &p, 2, &mut seq()).unwrap();
    let mut at = placed(&r);
    at.sort_unstable();
    // One task per zone, each on the zone's fullest instance.
    assert_eq!(at, [1, 3]);
}

#[test]
fn plans_are_checked() {
    for (c, s, want) in [
        (
            vec![constraint("memberOf", Some("attribute:x =="))],
            vec![],
            "placementConstraints[0].expression",
        ),
        (
            vec![constraint("nearby", None)],
            vec![],
            "must be distinctInstance or memberOf",
        ),
        (
            vec![],
            vec![strategy("spread", Some("zone"))],
            "instanceId, host or attribute:NAME",
        ),
        (
            vec![],
            vec![strategy("binpack", Some("disk"))],
            "cpu or memory",
        ),
        (
            vec![],
            vec![strategy("pack", None)],
            "random, spread or binpack",
        ),
    ] {
        let e = Plan::parse(&c, &s).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
    assert!(Plan::parse(&[], &[strategy("binpack", Some("MEMORY"))]).is_ok());
}

#[test]
fn needs_are_the_agents_accounting() {
    let def: TaskDefinition = serde_json::from_str(
        r#"{"family":"f","containerDefinitions":[
            {"name":"a","image":"x","cpu":256,"memory":128,
             "portMappings":[{"containerPort":80,"hostPort":8080},{"containerPort":81,"hostPort":0},
                             {"containerPort":53,"hostPort":5353,"protocol":"udp"},{"containerPort":82}]},
            {"name":"b","image":"x","memoryReservation":64}]}"#,
    )
    .unwrap();
    let n = Need::of(&def, NetworkMode::Bridge, "family:f");
    assert_eq!((n.cpu, n.memory), (256, 192));
    assert_eq!(
        (n.ports.as_slice(), n.udp_ports.as_slice()),
        (&[8080][..], &[5353][..])
    );
    let n = Need::of(&def, NetworkMode::Host, "family:f");
    assert_eq!(n.ports, [80, 81, 82]);
    assert_eq!(n.udp_ports, [53]);
    let n = Need::of(&def, NetworkMode::Awsvpc, "family:f");
    assert!(n.ports.is_empty() && n.udp_ports.is_empty());
    // A container with both reserves its memoryReservation, not its hard limit.
    let both: TaskDefinition = serde_json::from_str(
        r#"{"family":"f","containerDefinitions":[
            {"name":"a","image":"x","memory":512,"memoryReservation":128},
            {"name":"b","image":"x","memory":64}]}"#,
    )
    .unwrap();
    assert_eq!(Need::of(&both, NetworkMode::Awsvpc, "family:f").memory, 192);
    // Task-level sizes win.
    let mut def = def;
    def.cpu = Some(crate::taskdef::model::SizeValue("1 vCPU".into()));
    def.memory = Some(crate::taskdef::model::SizeValue("2048".into()));
    let n = Need::of(&def, NetworkMode::Bridge, "family:f");
    assert_eq!((n.cpu, n.memory), (1024, 2048));
}

#[test]
fn service_events_name_the_closest_instance() {
    let f = |reason: &str| {
        vec![Failure {
            arn: "arn:aws:ecs:us-east-1:0:container-instance/c/abc".into(),
            reason: reason.into(),
        }]
    };
    assert_eq!(
        service_event("web", &f(RESOURCE_MEMORY)),
        "(service web) was unable to place a task because no container instance met all of its \
         requirements. The closest matching (container-instance abc) has insufficient memory \
         available. For more information, see the Troubleshooting section of the Amazon ECS \
         Developer Guide."
    );
    assert!(service_event("web", &f(MEMBER_OF)).ends_with("of its requirements."));
}
