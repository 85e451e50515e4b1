use super::*;

pub(super) fn call(elb: &Elb, op: &str, pairs: &[(&str, &str)]) -> String {
    let xml = ops::call(elb, op, &query::Params::of(pairs))
        .unwrap_or_else(|e| panic!("{op}: {}", e.message()));
    query::response(op, xml, "test")
}

/// Between `<Tag>` and `</Tag>` in `xml`, after `from`.
fn between<'a>(xml: &'a str, from: &str, tag: &str) -> &'a str {
    let rest = &xml[xml.find(from).unwrap_or_else(|| panic!("{from} in {xml}"))..];
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let start = rest.find(&open).unwrap() + open.len();
    &rest[start..start + rest[start..].find(&close).unwrap()]
}

/// A load balancer with an HTTP listener forwarding to an `ip` group (deregistration
/// delay 30 s), made through `elb`: the group's ARN.
pub(super) fn group_in_use(elb: &Elb, name: &str) -> String {
    let lb = call(elb, "CreateLoadBalancer", &[("Name", name)]);
    let lb = between(&lb, "<LoadBalancers>", "LoadBalancerArn").to_string();
    let tg = call(
        elb,
        "CreateTargetGroup",
        &[
            ("Name", name),
            ("Protocol", "HTTP"),
            ("Port", "80"),
            ("VpcId", "vpc-1"),
            ("TargetType", "ip"),
        ],
    );
    let tg = between(&tg, "<TargetGroups>", "TargetGroupArn").to_string();
    call(
        elb,
        "ModifyTargetGroupAttributes",
        &[
            ("TargetGroupArn", &tg),
            (
                "Attributes.member.1.Key",
                "deregistration_delay.timeout_seconds",
            ),
            ("Attributes.member.1.Value", "30"),
        ],
    );
    call(
        elb,
        "CreateListener",
        &[
            ("LoadBalancerArn", lb.as_str()),
            ("Protocol", "HTTP"),
            ("Port", "80"),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", &tg),
        ],
    );
    tg
}

#[test]
fn a_write_of_another_process_since_the_resources_were_read_is_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Elb::open(dir.path().to_path_buf()).unwrap();
    serve.follow_writes();
    let tg = group_in_use(&serve, "lost-update");
    serve.register_target(&tg, "10.9.1.1", 80).unwrap();
    // The CLI opens the store; serve registers a target (its scheduler: a new task);
    // then the CLI deregisters the first one, from what it read before serve's write.
    let cli = Elb::open(dir.path().to_path_buf()).unwrap();
    serve.register_target(&tg, "10.9.1.2", 80).unwrap();
    call(
        &cli,
        "DeregisterTargets",
        &[
            ("TargetGroupArn", tg.as_str()),
            ("Targets.member.1.Id", "10.9.1.1"),
            ("Targets.member.1.Port", "80"),
        ],
    );
    serve.sync().unwrap();
    let s = serve.lock();
    let targets: Vec<&str> = s.groups[&tg]
        .targets
        .iter()
        .map(|t| t.id.as_str())
        .collect();
    assert_eq!(targets, ["10.9.1.2"], "serve's registration kept");
    let draining: Vec<&str> = s.draining.iter().map(|d| d.target.id.as_str()).collect();
    assert_eq!(draining, ["10.9.1.1"]);
}

#[test]
fn a_target_another_process_deregisters_drains_in_serve_until_registered_again() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Elb::open(dir.path().to_path_buf()).unwrap();
    serve.follow_writes();
    // The CLI: a process of its own, which opens the store for each verb.
    let cli = || Elb::open(dir.path().to_path_buf()).unwrap();
    let lb = call(&cli(), "CreateLoadBalancer", &[("Name", "drain-lb")]);
    let lb = between(&lb, "<LoadBalancers>", "LoadBalancerArn").to_string();
    let tg = call(
        &cli(),
        "CreateTargetGroup",
        &[
            ("Name", "drain-tg"),
            ("Protocol", "HTTP"),
            ("Port", "80"),
            ("VpcId", "vpc-1"),
            ("TargetType", "ip"),
        ],
    );
    let tg = between(&tg, "<TargetGroups>", "TargetGroupArn").to_string();
    call(
        &cli(),
        "ModifyTargetGroupAttributes",
        &[
            ("TargetGroupArn", &tg),
            (
                "Attributes.member.1.Key",
                "deregistration_delay.timeout_seconds",
            ),
            ("Attributes.member.1.Value", "30"),
        ],
    );
    let forward = [
        ("LoadBalancerArn", lb.as_str()),
        ("Protocol", "HTTP"),
        ("Port", "80"),
        ("DefaultActions.member.1.Type", "forward"),
        ("DefaultActions.member.1.TargetGroupArn", &tg),
    ];
    call(&cli(), "CreateListener", &forward);
    let target = |ip: &'static str| {
        [
            ("TargetGroupArn", tg.as_str()),
            ("Targets.member.1.Id", ip),
            ("Targets.member.1.Port", "80"),
        ]
    };
    call(&cli(), "RegisterTargets", &target("10.9.0.1"));
    call(&cli(), "RegisterTargets", &target("10.9.0.2"));
    serve.sync().unwrap();
    let state = |elb: &Elb, ip: &str| {
        let x = call(elb, "DescribeTargetHealth", &[("TargetGroupArn", &tg)]);
        x.find(&format!("<Id>{ip}</Id>"))
            .map(|_| between(&x, &format!("<Id>{ip}</Id>"), "State").to_string())
    };
    assert_eq!(state(&serve, "10.9.0.1").as_deref(), Some("initial"));

    // Deregistered by the CLI: serve drains it, and publishes it draining for the
    // CLI's DescribeTargetHealth.
    call(&cli(), "DeregisterTargets", &target("10.9.0.1"));
    serve.sync().unwrap();
    assert_eq!(state(&serve, "10.9.0.1").as_deref(), Some("draining"));
    let x = call(&serve, "DescribeTargetHealth", &[("TargetGroupArn", &tg)]);
    assert_eq!(
        between(&x, "<Id>10.9.0.1</Id>", "Reason"),
        "Target.DeregistrationInProgress"
    );
    let published = serve.published_health();
    let row = published
        .iter()
        .find(|r| r.target.id == "10.9.0.1")
        .unwrap();
    assert_eq!(row.state, "draining");
    assert!(
        row.draining_for_ms
            .is_some_and(|ms| ms > 25_000 && ms <= 30_000)
    );
    let reader = cli();
    reader.take_health(&published);
    assert_eq!(state(&reader, "10.9.0.1").as_deref(), Some("draining"));
    assert_eq!(state(&reader, "10.9.0.2").as_deref(), Some("initial"));
    // No new request goes to it: the data plane picks among the registered targets.
    assert!(
        serve.checks().iter().all(|c| c.target.id != "10.9.0.1"),
        "a draining target is not health checked"
    );

    // Registered again (by the CLI) while draining: registered, as RegisterTargets
    // here makes it.
    call(&cli(), "RegisterTargets", &target("10.9.0.1"));
    serve.sync().unwrap();
    assert_eq!(state(&serve, "10.9.0.1").as_deref(), Some("initial"));
    assert!(
        serve
            .published_health()
            .iter()
            .all(|r| r.draining_for_ms.is_none())
    );

    // Serve's own deregistration, then the CLI's of another target: both drain once.
    assert_eq!(
        serve.deregister_target(&tg, "10.9.0.1", 80).unwrap(),
        Some(std::time::Duration::from_secs(30))
    );
    call(&cli(), "DeregisterTargets", &target("10.9.0.2"));
    serve.sync().unwrap();
    assert_eq!(state(&serve, "10.9.0.1").as_deref(), Some("draining"));
    assert_eq!(state(&serve, "10.9.0.2").as_deref(), Some("draining"));
    assert_eq!(serve.lock().draining.len(), 2);

    // A group no listener uses: a target the CLI deregisters leaves at once, as
    // DeregisterTargets here does.
    let listener = call(
        &cli(),
        "DescribeListeners",
        &[("LoadBalancerArn", lb.as_str())],
    );
    let listener = between(&listener, "<Listeners>", "ListenerArn").to_string();
    call(&cli(), "DeleteListener", &[("ListenerArn", &listener)]);
    call(&cli(), "RegisterTargets", &target("10.9.0.3"));
    serve.sync().unwrap();
    call(&cli(), "DeregisterTargets", &target("10.9.0.3"));
    serve.sync().unwrap();
    assert_eq!(state(&serve, "10.9.0.3"), None);

    // A deleted group: its drains end, as DeleteTargetGroup here ends them.
    call(&cli(), "DeleteTargetGroup", &[("TargetGroupArn", &tg)]);
    serve.sync().unwrap();
    assert!(serve.lock().draining.is_empty());
    assert!(serve.published_health().is_empty());
}

#[test]
fn a_target_another_process_registers_again_between_two_reads_is_initial_again_in_serve() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Elb::open(dir.path().to_path_buf()).unwrap();
    serve.follow_writes();
    // The CLI: a process of its own, which opens the store for each verb.
    let cli = || Elb::open(dir.path().to_path_buf()).unwrap();
    let tg = group_in_use(&cli(), "again");
    let target = [
        ("TargetGroupArn", tg.as_str()),
        ("Targets.member.1.Id", "10.9.2.1"),
        ("Targets.member.1.Port", "80"),
    ];
    call(&cli(), "RegisterTargets", &target);
    serve.sync().unwrap();
    let key = |s: &State| s.health.keys().next().cloned().unwrap();
    {
        let mut s = serve.lock();
        let k = key(&s);
        s.health.get_mut(&k).unwrap().state = "unhealthy";
    }
    // Both between two of serve's reads.
    call(&cli(), "DeregisterTargets", &target);
    call(&cli(), "RegisterTargets", &target);
    serve.sync().unwrap();
    let s = serve.lock();
    assert_eq!(s.health[&key(&s)].state, "initial");
    assert!(s.draining.is_empty(), "registered again: not draining");
}

/// The data plane's threads route at once (docs/load-balancing.md "Speed"): a route does
/// not wait for another thread's route in progress, whatever the group's algorithm. (With
/// one lock for all, a thread taken off its core while routing held up every request of
/// the others.) Here a route in progress is the resources held as a route holds them, and
/// each algorithm's route on another thread must end while they are held.
#[test]
fn a_route_does_not_wait_for_another_threads_route() {
    let dir = tempfile::tempdir().unwrap();
    let elb = std::sync::Arc::new(Elb::open(dir.path().to_path_buf()).unwrap());
    let tg = group_in_use(&elb, "parallel");
    call(
        &elb,
        "RegisterTargets",
        &[
            ("TargetGroupArn", &tg),
            ("Targets.member.1.Id", "10.0.0.1"),
            ("Targets.member.2.Id", "10.0.0.2"),
            ("Targets.member.3.Id", "10.0.0.3"),
        ],
    );
    let listener = elb.lock().listeners.keys().next().cloned().unwrap();
    let route = |elb: &Elb| {
        let req = rules::Request {
            method: "GET",
            host: Some("parallel"),
            path: "/",
            query: None,
            headers: &[],
            source: std::net::Ipv4Addr::LOCALHOST.into(),
        };
        let mut meter = meters::Meter::default();
        let pick = elb.route(&listener, Some(&req), req.source, &mut meter);
        matches!(pick, Pick::Target(..))
    };
    for algorithm in [
        "round_robin",
        "least_outstanding_requests",
        "weighted_random",
    ] {
        call(
            &elb,
            "ModifyTargetGroupAttributes",
            &[
                ("TargetGroupArn", &tg),
                ("Attributes.member.1.Key", "load_balancing.algorithm.type"),
                ("Attributes.member.1.Value", algorithm),
                (
                    "Attributes.member.2.Key",
                    "load_balancing.algorithm.anomaly_mitigation",
                ),
                (
                    "Attributes.member.2.Value",
                    if algorithm == "weighted_random" {
                        "on"
                    } else {
                        "off"
                    },
                ),
            ],
        );
        // The group's first request makes what the data plane keeps of it.
        assert!(route(&elb), "{algorithm}: the first route");
        let held = elb.read();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let routed = (0..100).all(|_| route(&elb));
                let _ = tx.send(routed);
            });
            let routed = rx.recv_timeout(std::time::Duration::from_secs(5));
            drop(held);
            assert_eq!(
                routed,
                Ok(true),
                "{algorithm}: a route waited for another in progress"
            );
        });
    }
}

/// Where a group's requests go with one of its three targets healthy: to it alone while
/// the unhealthy-state-routing minimum is met (1 by default), to all three (ELB's fail
/// open) when the count or the percentage asks for more healthy targets than there are.
#[test]
fn requests_go_to_all_targets_below_the_group_s_minimum_of_healthy_targets() {
    let dir = tempfile::tempdir().unwrap();
    let elb = Elb::open(dir.path().to_path_buf()).unwrap();
    let tg = group_in_use(&elb, "minimum");
    call(
        &elb,
        "RegisterTargets",
        &[
            ("TargetGroupArn", &tg),
            ("Targets.member.1.Id", "10.0.0.1"),
            ("Targets.member.2.Id", "10.0.0.2"),
            ("Targets.member.3.Id", "10.0.0.3"),
        ],
    );
    {
        let mut s = elb.lock();
        for (k, h) in s.health.iter_mut() {
            h.state = if k.1.id == "10.0.0.1" {
                "healthy"
            } else {
                "unhealthy"
            };
        }
    }
    let listener = elb.lock().listeners.keys().next().cloned().unwrap();
    let targets = |elb: &Elb| {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..12 {
            let req = rules::Request {
                method: "GET",
                host: Some("minimum"),
                path: "/",
                query: None,
                headers: &[],
                source: std::net::Ipv4Addr::LOCALHOST.into(),
            };
            let mut meter = meters::Meter::default();
            match elb.route(&listener, Some(&req), req.source, &mut meter) {
                Pick::Target(addr, _, _, proxy_v2) => {
                    assert!(!proxy_v2, "an HTTP group sends no PROXY header");
                    seen.insert(addr.ip().to_string());
                }
                _ => panic!("no target"),
            }
        }
        seen.into_iter().collect::<Vec<_>>()
    };
    let set = |count: &str, percentage: &str| {
        let key = "target_group_health.unhealthy_state_routing.minimum_healthy_targets";
        call(
            &elb,
            "ModifyTargetGroupAttributes",
            &[
                ("TargetGroupArn", &tg),
                ("Attributes.member.1.Key", &format!("{key}.count")),
                ("Attributes.member.1.Value", count),
                ("Attributes.member.2.Key", &format!("{key}.percentage")),
                ("Attributes.member.2.Value", percentage),
            ],
        )
    };
    let all = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
    assert_eq!(
        targets(&elb),
        ["10.0.0.1"],
        "the default: one healthy is enough"
    );
    set("2", "off");
    assert_eq!(targets(&elb), all, "count 2");
    set("1", "50");
    assert_eq!(targets(&elb), all, "50 % of 3: 2 healthy needed");
    set("1", "33");
    assert_eq!(
        targets(&elb),
        ["10.0.0.1"],
        "33 % of 3: 1 healthy is enough"
    );
    // ELB's bounds (the model's TargetGroupAttribute).
    for (count, percentage) in [("0", "off"), ("1", "101"), ("off", "off"), ("1", "0")] {
        let key = "target_group_health.unhealthy_state_routing.minimum_healthy_targets";
        let err = ops::call(
            &elb,
            "ModifyTargetGroupAttributes",
            &query::Params::of(&[
                ("TargetGroupArn", tg.as_str()),
                ("Attributes.member.1.Key", &format!("{key}.count")),
                ("Attributes.member.1.Value", count),
                ("Attributes.member.2.Key", &format!("{key}.percentage")),
                ("Attributes.member.2.Value", percentage),
            ]),
        )
        .err()
        .unwrap_or_else(|| panic!("{count} {percentage} accepted"));
        assert_eq!(err.code(), "ValidationError", "{count} {percentage}");
    }
}

/// ELB's default client IP preservation per target type (NLB User Guide, "Edit target
/// group attributes"): on for `instance` groups, off for TCP `ip` groups; proxy protocol
/// v2 off.
#[test]
fn a_tcp_group_s_client_ip_preservation_defaults_by_its_target_type() {
    let dir = tempfile::tempdir().unwrap();
    let elb = Elb::open(dir.path().to_path_buf()).unwrap();
    for (target_type, preserve) in [("ip", "false"), ("instance", "true")] {
        let tg = call(
            &elb,
            "CreateTargetGroup",
            &[
                ("Name", &format!("tcp-{target_type}")),
                ("Protocol", "TCP"),
                ("Port", "80"),
                ("VpcId", "vpc-1"),
                ("TargetType", target_type),
            ],
        );
        let tg = between(&tg, "<TargetGroups>", "TargetGroupArn").to_string();
        let a = call(
            &elb,
            "DescribeTargetGroupAttributes",
            &[("TargetGroupArn", &tg)],
        );
        let value = |key: &str| {
            let at = a.find(&format!("<Key>{key}</Key>")).unwrap();
            between(&a[at..], "</Key>", "Value").to_string()
        };
        assert_eq!(
            value("preserve_client_ip.enabled"),
            preserve,
            "{target_type}"
        );
        assert_eq!(value("proxy_protocol_v2.enabled"), "false", "{target_type}");
    }
}

/// A network load balancer with a TCP listener on 80 forwarding to a TCP `ip` group of
/// targets on `port`, made through `elb`: the group's ARN.
fn tcp_group_on_a_listener(elb: &Elb, port: &str) -> String {
    let lb = call(
        elb,
        "CreateLoadBalancer",
        &[("Name", "nlb"), ("Type", "network")],
    );
    let lb = between(&lb, "<LoadBalancers>", "LoadBalancerArn").to_string();
    let tg = call(
        elb,
        "CreateTargetGroup",
        &[
            ("Name", "tcp"),
            ("Protocol", "TCP"),
            ("Port", port),
            ("VpcId", "vpc-1"),
            ("TargetType", "ip"),
        ],
    );
    let tg = between(&tg, "<TargetGroups>", "TargetGroupArn").to_string();
    call(
        elb,
        "CreateListener",
        &[
            ("LoadBalancerArn", lb.as_str()),
            ("Protocol", "TCP"),
            ("Port", "80"),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", &tg),
        ],
    );
    tg
}

/// Registers (or, `on` false, deregisters) target 127.0.0.1 of group `tg`.
fn register_local(elb: &Elb, tg: &str, on: bool) {
    let op = if on {
        "RegisterTargets"
    } else {
        "DeregisterTargets"
    };
    let targets = [("TargetGroupArn", tg), ("Targets.member.1.Id", "127.0.0.1")];
    call(elb, op, &targets);
}

/// Sets attribute `key` of group `tg` to `value`.
fn set_group_attribute(elb: &Elb, tg: &str, key: &str, value: &str) {
    call(
        elb,
        "ModifyTargetGroupAttributes",
        &[
            ("TargetGroupArn", tg),
            ("Attributes.member.1.Key", key),
            ("Attributes.member.1.Value", value),
        ],
    );
}

/// Reports health check outcomes of target 127.0.0.1:`port` of `tg` until it is `to`.
fn drive_health(elb: &Elb, tg: &str, port: u16, to: &str) {
    for _ in 0..20 {
        if elb.health_of_target(tg, "127.0.0.1", port).map(|h| h.state) == Some(to) {
            return;
        }
        let c = elb.checks().into_iter().next().unwrap();
        let outcome = match to {
            "healthy" => Ok(()),
            _ => Err(("Target.FailedHealthChecks", "Health checks failed".into())),
        };
        elb.report(&c, outcome);
    }
    panic!("never {to}");
}

/// A TCP connection through a TCP listener is cut when its target turns unhealthy
/// (`target_health_state.unhealthy.connection_termination.enabled`, on by default; off, it
/// lasts), and when its deregistration delay ends with
/// `deregistration_delay.connection_termination.enabled` (off by default: it lasts).
#[test]
fn tcp_connections_are_cut_as_the_connection_termination_attributes_say() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let elb = Elb::open(dir.path().to_path_buf()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let target = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let front = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = target.local_addr().unwrap().port().to_string();
    let tg = tcp_group_on_a_listener(&elb, &port);
    let register = |on: bool| register_local(&elb, &tg, on);
    let set = |key: &str, value: &str| set_group_attribute(&elb, &tg, key, value);
    let health = |to: &str| drive_health(&elb, &tg, port.parse().unwrap(), to);
    let listener = elb.lock().listeners.keys().next().cloned().unwrap();
    // One connection through the listener: the client's end, and the relay's task.
    let connect = || {
        let mut meter = meters::Meter::default();
        let Pick::Target(_, _, hold, _) = elb.route(
            &listener,
            None,
            std::net::Ipv4Addr::LOCALHOST.into(),
            &mut meter,
        ) else {
            panic!("no target");
        };
        rt.block_on(async {
            let addr = front.local_addr().unwrap();
            let client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut inner, _) = front.accept().await.unwrap();
            let mut out = tokio::net::TcpStream::connect(target.local_addr().unwrap())
                .await
                .unwrap();
            let (far, _) = target.accept().await.unwrap();
            let cut = hold.load().map(|l| (l.clone(), l.open()));
            let relay = tokio::spawn(async move {
                let n = dataplane::relay(&mut inner, &mut out, cut).await;
                drop(hold);
                n
            });
            (client, far, relay)
        })
    };
    // Whether the connection still carries bytes, or was closed (end of stream).
    let carries = |client: &mut tokio::net::TcpStream, far: &mut tokio::net::TcpStream| {
        rt.block_on(async {
            let guard = std::time::Duration::from_secs(20);
            let _ = client.write_all(b"ping").await;
            let mut buf = [0u8; 4];
            match tokio::time::timeout(guard, far.read(&mut buf)).await {
                Ok(Ok(4)) => true,
                Ok(_) => false,
                Err(_) => panic!("neither bytes nor an end within {guard:?}"),
            }
        })
    };
    // The relay of a connection ends (a guard, not a measure: a relay never cut fails).
    let ended = |relay: tokio::task::JoinHandle<u64>| {
        let guard = std::time::Duration::from_secs(20);
        rt.block_on(async { tokio::time::timeout(guard, relay).await })
            .unwrap_or_else(|_| panic!("the connection was not cut within {guard:?}"))
            .unwrap();
    };
    register(true);
    health("healthy");
    // Unhealthy, with ELB's default: cut.
    let (mut client, mut far, relay) = connect();
    assert!(carries(&mut client, &mut far));
    health("unhealthy");
    ended(relay);
    assert!(!carries(&mut client, &mut far), "cut when unhealthy");
    // Termination off: the connection lasts.
    health("healthy");
    set(
        "target_health_state.unhealthy.connection_termination.enabled",
        "false",
    );
    let (mut client, mut far, _relay) = connect();
    health("unhealthy");
    assert!(
        carries(&mut client, &mut far),
        "kept when termination is off"
    );
    health("healthy");
    // Deregistered: by default the connection lasts past the delay (0 here); with
    // termination on, it is cut when the delay ends.
    set("deregistration_delay.timeout_seconds", "0");
    let (mut client, mut far, _relay) = connect();
    register(false);
    assert!(carries(&mut client, &mut far), "kept by default");
    register(true);
    health("healthy");
    set(
        "deregistration_delay.connection_termination.enabled",
        "true",
    );
    let (mut client, mut far, relay) = connect();
    register(false);
    ended(relay);
    assert!(!carries(&mut client, &mut far), "cut at the delay's end");
}

#[test]
fn create_listener_refuses_the_tls_members_as_modify_listener_does() {
    // They were dropped without a word by CreateListener (issue 74): an HTTP listener here
    // has no certificate, so a security policy, an ALPN policy or mutual TLS is refused.
    let dir = tempfile::tempdir().unwrap();
    let elb = Elb::open(dir.path().to_path_buf()).unwrap();
    let lb = call(&elb, "CreateLoadBalancer", &[("Name", "tls")]);
    let lb = between(&lb, "<LoadBalancers>", "LoadBalancerArn").to_string();
    for (member, value) in [
        ("SslPolicy", "ELBSecurityPolicy-2016-08"),
        ("AlpnPolicy.member.1", "HTTP2Preferred"),
        ("MutualAuthentication.Mode", "verify"),
    ] {
        let p = query::Params::of(&[
            ("LoadBalancerArn", lb.as_str()),
            ("Protocol", "HTTP"),
            ("Port", "80"),
            ("DefaultActions.member.1.Type", "fixed-response"),
            (
                "DefaultActions.member.1.FixedResponseConfig.StatusCode",
                "200",
            ),
            (member, value),
        ]);
        let e = ops::call(&elb, "CreateListener", &p).err().expect(member);
        assert_eq!(e.code(), "UnsupportedProtocol", "{member}");
        let m = e.message();
        assert!(m.contains(member.split('.').next().unwrap()), "{m}");
    }
}
