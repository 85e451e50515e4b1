//! `minifargate serve`: the ECS API (AWS JSON 1.1) over HTTP, for the AWS CLI and SDKs.
//! Every operation calls the ECS core (`crate::ecs`), as the CLI verb of the same name
//! does, over the same store, so tasks started either way are visible both ways; `serve`
//! also runs the service scheduler (`crate::scheduler`). Every request first passes the
//! guard (`guard`: body limits, SigV4 verification in `auth`, a request cap), over the
//! connection loop of `server` (timeouts, TLS).

pub mod auth;
pub mod autoscaling;
pub mod cbor;
pub mod cloudwatch;
pub mod console;
pub mod coverage;
pub mod ecr;
pub mod ecr_host;
pub mod ecs;
pub mod elb;
#[cfg(test)]
mod fuzz;
pub mod guard;
pub mod keygen;
pub mod logs;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod servicediscovery;
pub mod start;

use crate::ecs::Ecs;
use anyhow::Context;
use axum::Router;
use axum::routing::post;
use std::net::SocketAddr;
use std::sync::Arc;

/// How `serve` protects the API: the access keys it accepts (None: any request,
/// `--insecure-no-auth`), TLS, the Host rule and the bounds.
#[derive(Default)]
pub struct Security {
    pub keys: Option<auth::Keys>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub limits: guard::Limits,
    /// The Host header values answered (DNS rebinding).
    pub hosts: guard::Hosts,
    /// The web console's options (crate::api::console).
    pub console: console::Options,
}

/// Serves the ECS API on `listen` until Ctrl-C or SIGTERM; `listening` is told the bound
/// address (port 0 picks one) once requests are accepted.
pub async fn serve(
    g: Ecs,
    listen: SocketAddr,
    security: Security,
    listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    // Each call opens the store as the CLI verbs do. This connection stays open for the
    // server's lifetime so that closing theirs is never closing the last one, which
    // would checkpoint the WAL and fsync on every request (16 ms a call here, see
    // docs/serve.md); SQLite checkpoints by itself as the WAL grows.
    let _keep_open = g.open_store()?;
    let ctx = crate::taskdef::AwsContext::from_env();
    let ecr_env = crate::ecr::lifecycle::Schedule::from_config();
    let reg = Arc::new(
        crate::ecr::Registry::open(&g.root, &ctx.account_id, &ctx.region)
            .context("failed to open the registry (ECR)")?
            .with_gc_grace(ecr_env.gc_grace_secs),
    );
    let tokens = match security.keys {
        Some(_) => Some(Arc::new(
            crate::ecr::tokens::Tokens::load_or_create(reg.dir())
                .context("failed to set up the registry's token key")?,
        )),
        None => None,
    };
    let _ = REGISTRY.set(reg.clone());
    // Cluster mode: one registry for the whole cluster (docs/registry.md).
    let _registry_rows = match crate::cluster::serving() {
        Some(etcd) => Some(
            crate::cluster::registries::share(
                etcd,
                reg.clone(),
                crate::cluster::registries::this_serve(),
            )
            .await
            .context("failed to share the registry (ECR) with the cluster")?,
        ),
        None => None,
    };
    let front = Arc::new(registry::Front {
        registry: reg,
        tokens,
    });
    let root = g.root.clone();
    let run_root = g.run_root.clone();
    let elb = Arc::new(
        crate::elb::Elb::open(g.root.clone())
            .context("failed to load the load balancers (Elastic Load Balancing v2)")?,
    );
    // The targets' health history as the last serve left it (the console's; this serve
    // writes it from now on: `crate::elb::history`).
    {
        let e = elb.clone();
        tokio::task::spawn_blocking(move || e.load_history())
            .await
            .context("failed to read the targets' health history")?;
    }
    let history = elb.clone();
    let metrics = Arc::new(crate::cloudwatch::Metrics::new());
    let cloudwatch = Arc::new(crate::cloudwatch::CloudWatch {
        metrics: metrics.clone(),
        // `serve --cluster`: the alarms are the cluster's (docs/cloudwatch.md "In cluster
        // mode").
        alarms: match crate::cluster::replica::get() {
            Some(_) => {
                crate::cloudwatch::Alarms::open_shared(&g.root, &ctx.region, &ctx.account_id)
            }
            None => crate::cloudwatch::Alarms::open(Some(&g.root), &ctx.region, &ctx.account_id),
        }
        .map_err(|e| anyhow::anyhow!("failed to load the CloudWatch alarms: {e}"))?,
    });
    // `serve --cluster`: the load balancers are the cluster's; their data plane runs in
    // the leader's serve (docs/load-balancing.md "Cluster mode").
    let scheduler =
        crate::scheduler::Scheduler::start(g.clone(), Some(elb.clone()), Some(cloudwatch.clone()))
            .context("failed to start the service scheduler")?;
    let records = Arc::new(crate::dns::Records::default());
    let (mut dns, names) = names_and_dns(&g, records.clone()).await;
    let cloudmap = Arc::new(
        crate::servicediscovery::CloudMap::open(g.root.clone())
            .context("failed to load the Cloud Map resources (servicediscovery)")?,
    );
    cloudmap.serve_names(records.clone());
    // `serve --cluster`: the load balancers and Cloud Map are the cluster's; the load
    // balancers' data plane runs in the leader's serve, which also publishes Cloud Map's
    // names to the boxes' DNS servers (docs/load-balancing.md, docs/service-discovery.md
    // "Cluster mode").
    let elb_follower = match crate::cluster::serving() {
        Some(etcd) => {
            elb.follow_store();
            cloudmap.follow_store();
            tokio::spawn(follow_cluster(
                etcd,
                elb.clone(),
                cloudmap.clone(),
                g.clone(),
            ))
        }
        // One box: the CLI's `elbv2` and `servicediscovery` verbs write the same store
        // from their own processes; what they made is served within a second.
        None => {
            elb.follow_writes();
            // (Cloud Map's resources are read again by its registrations' pass, once a
            // second: `servicediscovery::ecs::run`.)
            cloudmap.follow_store();
            tokio::spawn(follow_local_writes(elb.clone(), g.run_root.clone()))
        }
    };
    let registries = tokio::spawn(crate::servicediscovery::ecs::run(
        cloudmap.clone(),
        g.clone(),
    ));
    // Service Connect's aliases on the task bridge's gateway, where the DNS server is.
    let connect = dns.as_ref().and_then(|d| match d.addr.ip() {
        std::net::IpAddr::V4(gw) => Some(tokio::spawn(crate::servicediscovery::connect::run(
            cloudmap.clone(),
            g.clone(),
            gw,
            records.clone(),
        ))),
        std::net::IpAddr::V6(_) => None,
    });
    // (In a cluster the boxes' agents serve them, from what the leader publishes.)
    if connect.is_none() && crate::cluster::serving().is_none() {
        tracing::warn!(
            "no DNS server for tasks: services' Service Connect aliases are not served (docs/service-discovery.md)"
        );
    }
    let expiry = tokio::spawn(crate::ecr::lifecycle::run(
        front.registry.clone(),
        ecr_env.interval,
    ));
    let dataplane = (
        tokio::spawn(crate::elb::dataplane::run(elb.clone(), names.clone())),
        tokio::spawn(crate::elb::health::run(elb.clone())),
        tokio::spawn(crate::elb::history::run(elb.clone())),
    );
    // `serve --cluster`: the targets, policies and scheduled actions are the cluster's
    // (docs/scaling.md "In a cluster").
    let autoscaling = Arc::new(
        match crate::cluster::replica::get() {
            Some(_) => {
                crate::autoscaling::AutoScaling::open_shared(&g.root, &ctx.region, &ctx.account_id)
            }
            None => {
                crate::autoscaling::AutoScaling::open(Some(&g.root), &ctx.region, &ctx.account_id)
            }
        }
        .map_err(|e| anyhow::anyhow!("failed to load Application Auto Scaling's state: {e}"))?,
    );
    let publisher = tokio::spawn(publish_ecs_metrics(
        g.clone(),
        cloudwatch.clone(),
        autoscaling.clone(),
        elb.clone(),
    ));
    let ecs_events = tokio::spawn(write_ecs_events(g.clone()));
    let g = Arc::new(g);
    let app = Router::new()
        // The guard bounds every body first (256 KiB; ECR's UploadLayerPart its own, ~27
        // MiB): axum's default 2 MB would cut a layer part.
        .route(
            "/",
            post(dispatch)
                .layer(axum::extract::DefaultBodyLimit::max(32 * 1024 * 1024))
                .get(console::index),
        )
        .route("/service/{service}/operation/{operation}", post(rpc_v2))
        .with_state(g.clone())
        .merge(console::router(g, security.console))
        .merge(registry::router(front.clone()))
        .layer(axum::Extension(elb))
        .layer(axum::Extension(cloudmap))
        .layer(axum::Extension(cloudwatch))
        .layer(axum::Extension(autoscaling));
    // Last, so that it wraps every route and the fallback.
    let allowed_hosts = security.hosts.allowed.clone();
    let mut hosts = security.hosts;
    // The registry's ECR host name is AWS's: a DNS-rebinding page cannot point it here.
    hosts.allowed.push(front.registry.host());
    let app = app.layer(axum::middleware::from_fn_with_state(
        Arc::new(guard::Guard::new(security.keys, security.limits).with_hosts(hosts)),
        guard::guard,
    ));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to listen on {listen}"))?;
    let addr = listener.local_addr().unwrap_or(listen);
    // Cluster mode: the address the boxes pull from this registry at (its certificate
    // names it; docs/registry.md "A cluster's boxes").
    let cluster_at = crate::cluster::serving().and_then(|etcd| {
        crate::cluster::registries::advertised_address(
            crate::config::get().registry_advertise.as_deref(),
            addr,
            etcd,
        )
    });
    let RegistryTls {
        tls,
        trust: _trust,
        ca_pem,
        at_443,
    } = registry_tls(
        security.tls,
        &front.registry,
        &root,
        addr,
        &allowed_hosts,
        cluster_at.as_deref(),
    )
    .await?;
    listening(addr);
    let at_443 = match at_443 {
        Some((bound, acceptor)) => Some(
            bound
                .serve(
                    &front.registry.host(),
                    acceptor,
                    app.clone(),
                    security.limits,
                    names.clone(),
                )
                .await,
        ),
        None => None,
    };
    let _advertised = registry::Advertised::start(&root, &front, addr);
    let cluster_ad = match (crate::cluster::serving(), cluster_at) {
        (Some(etcd), Some(at)) => Some(registry::advertise_to_cluster(etcd, &front, at, ca_pem)),
        (Some(_), None) => {
            eprintln!(
                "minifargate: warning: cluster mode, but no address of this serve's registry \
                 for the boxes was found: set MINIFARGATE_REGISTRY_ADVERTISE=host:port \
                 (docs/registry.md \"A cluster's boxes\")"
            );
            None
        }
        _ => None,
    };
    tracing::info!(%addr, "ECS API listening");
    server::run_with(listener, tls, app, security.limits, shutdown()).await;
    if let Some(s) = at_443 {
        s.stop().await;
    }
    if let Some(ad) = cluster_ad {
        ad.withdraw().await;
    }
    expiry.abort();
    registries.abort();
    if let Some(c) = connect {
        c.abort();
    }
    elb_follower.abort();
    // No serve, no health checks: the CLI's DescribeTargetHealth no longer reads theirs.
    let _ = std::fs::remove_file(crate::elb::health::published_file(&run_root));
    dataplane.0.abort();
    dataplane.1.abort();
    dataplane.2.abort();
    // What the history recorded and its task had not written yet.
    let _ = tokio::task::spawn_blocking(move || history.save_history()).await;
    publisher.abort();
    ecs_events.abort();
    // The load balancers' addresses and hosts lines go with their listeners; new tasks
    // use the host's resolvers again.
    let _ = tokio::task::spawn_blocking(move || {
        names.lock().unwrap_or_else(|p| p.into_inner()).clear()
    })
    .await;
    if let Some(d) = dns.as_mut() {
        d.stop();
    }
    // Services' tasks keep running (they belong to their supervisors); the next `serve`
    // picks the services up from the store.
    tokio::task::spawn_blocking(move || scheduler.stop())
        .await
        .context("failed to stop the service scheduler")?;
    Ok(())
}

/// The TLS of serve's port and the registry's at its ECR host name. Without
/// `--tls-cert`: serve's port speaks HTTPS to registry clients with the box's registry
/// certificate, and the registry answers on port 443 of serve's loopback address too
/// (`ecr_host`; with the acceptor it serves with). With `--tls-cert` (`user`), every
/// connection to serve's port is TLS with that certificate, and nothing answers on 443
/// (said at start: the repository URIs do not reach this registry then).
async fn registry_tls(
    user: Option<tokio_rustls::TlsAcceptor>,
    reg: &crate::ecr::Registry,
    root: &std::path::Path,
    addr: SocketAddr,
    allowed: &[String],
    cluster_at: Option<&str>,
) -> anyhow::Result<RegistryTls> {
    if let Some(a) = user {
        eprintln!(
            "minifargate: note: with --tls-cert the registry answers on serve's port only, \
             not at its host name {} (port {}): push to {}/<name> (docs/registry.md \"The \
             repository URI on the box\")",
            reg.host(),
            ecr_host::PORT,
            addr
        );
        return Ok(RegistryTls {
            tls: server::Tls::On(a),
            trust: Vec::new(),
            ca_pem: None,
            at_443: None,
        });
    }
    let bound = ecr_host::bind(root, &reg.host(), addr).await;
    let (files, trust) = registry::https(
        reg,
        addr,
        allowed,
        cluster_at,
        bound.as_ref().map(ecr_host::Bound::ip),
    )?;
    let acceptor = server::tls_acceptor(&files.cert, &files.key, None)?;
    let ca_pem = std::fs::read_to_string(&files.ca_cert).ok();
    let at_443 = bound.map(|b| (b, acceptor.clone()));
    Ok(RegistryTls {
        tls: server::Tls::Sniff(acceptor),
        trust,
        ca_pem,
        at_443,
    })
}

/// What [`registry_tls`] set up.
struct RegistryTls {
    /// serve's port.
    tls: server::Tls,
    /// The trust written for clients (removed when dropped).
    trust: Vec<crate::ecr::tls::Trust>,
    /// The registry CA's certificate (for the cluster's boxes).
    ca_pem: Option<String>,
    /// Port 443 at the ECR host name, with the acceptor to serve it with.
    at_443: Option<(ecr_host::Bound, tokio_rustls::TlsAcceptor)>,
}

/// One box: the load balancers read again, once a second, what another process (the
/// CLI's `elbv2` verbs) changed in the store; the data plane follows (docs/load-balancing.md
/// "From the CLI"). The targets' health goes to `crate::elb::health::published_file` as it
/// changes, for the CLI's DescribeTargetHealth: a check's outcome, a registration, a drain
/// that begins (`Elb::changes`) or ends.
async fn follow_local_writes(elb: Arc<crate::elb::Elb>, run_root: std::path::PathBuf) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut health = elb.health_changes();
    health.mark_changed();
    let mut resources = elb.changes();
    // When the first drain the file lists ends (it is published again then): from what
    // was published, so that a drain ending while this loop reads the store is not missed.
    let mut listed_drain_end: Option<tokio::time::Instant> = None;
    loop {
        let drained = async move {
            match listed_drain_end {
                // A moment after the drain's end, so that it has ended when published.
                Some(t) => tokio::time::sleep_until(t + std::time::Duration::from_millis(50)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {
                let e = elb.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(err) = e.sync() {
                        tracing::warn!(error = %err, "load balancers: reading the store again failed");
                    }
                })
                .await;
            }
            changed = async {
                tokio::select! {
                    r = health.changed() => r,
                    r = resources.changed() => r,
                    () = drained => Ok(()),
                }
            } => {
                if changed.is_err() {
                    break;
                }
                let rows = elb.published_health();
                let now = tokio::time::Instant::now();
                listed_drain_end = rows
                    .iter()
                    .filter_map(|r| r.draining_for_ms)
                    .min()
                    .map(|ms| now + std::time::Duration::from_millis(ms));
                if let Err(err) = crate::elb::health::publish_to_file(&run_root, &rows) {
                    tracing::warn!(error = %err, "load balancers: cannot publish the targets' health for the CLI");
                }
            }
        }
    }
}

/// `serve --cluster`: the load balancers and Cloud Map read the rows other serves wrote
/// as they are applied; while this serve leads, the load balancers' data plane runs here
/// (for hosts without an agent) and Cloud Map's names, Service Connect's aliases (once a
/// second), the load balancers' configuration and their targets' health go to etcd for
/// the boxes' data planes and the other serves (`crate::cluster::names`,
/// `crate::cluster::balancers`).
async fn follow_cluster(
    etcd: &'static crate::cluster::etcd::Etcd,
    elb: Arc<crate::elb::Elb>,
    cm: Arc<crate::servicediscovery::CloudMap>,
    g: Ecs,
) {
    let mut leadership = crate::cluster::leader::leadership();
    let mut applied = crate::cluster::replica::applied();
    let mut names = cm.changes();
    let mut health = elb.health_changes();
    let mut lbs = elb.changes();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut store: Option<crate::store::Store> = None;
    // Whether this leadership took the published sticky cookie key yet.
    let mut adopted = false;
    loop {
        let leading = *leadership.borrow_and_update();
        if !leading {
            adopted = false;
        }
        elb.set_active(leading);
        applied.borrow_and_update();
        names.borrow_and_update();
        let (e, c) = (elb.clone(), cm.clone());
        let synced = tokio::task::spawn_blocking(move || {
            if let Err(err) = e.sync() {
                tracing::warn!(error = %err, "load balancers: reading the cluster's rows failed");
            }
            if let Err(err) = c.sync() {
                tracing::warn!(error = %err, "Cloud Map: reading the cluster's rows failed");
            }
            c.dns_source()
        })
        .await;
        // Where `instance` targets are: the boxes' addresses, by EC2 instance id.
        match crate::cluster::instances::ec2_addresses(etcd).await {
            Ok(m) => elb.set_instances(m),
            Err(e) => tracing::warn!(error = %crate::errors::error_chain(&e),
                "load balancers: cannot read the boxes' instance ids"),
        }
        if leading
            && let Ok(source) = synced
            && let Err(e) = crate::cluster::names::publish(etcd, &source).await
        {
            tracing::warn!(error = %crate::errors::error_chain(&e),
                "Cloud Map: cannot publish the names to the boxes' DNS servers");
        }
        if leading {
            health.borrow_and_update();
            lbs.borrow_and_update();
            // Adopted anew at each start of a leadership until it is read.
            let adopt = !adopted;
            match crate::cluster::balancers::publish(etcd, &elb, adopt).await {
                Ok(()) => adopted = true,
                Err(e) => tracing::warn!(error = %crate::errors::error_chain(&e),
                    "load balancers: cannot publish them and their targets' health to the boxes and the other serves"),
            }
            // Service Connect's aliases, for the tasks of every box.
            let (c, g2) = (cm.clone(), g.clone());
            let mut st = store.take();
            let got = tokio::task::spawn_blocking(move || {
                if st.is_none() {
                    st = g2.open_store().ok();
                }
                let a = st
                    .as_ref()
                    .map(|s| crate::servicediscovery::connect::aliases(&c, s));
                (st, a)
            })
            .await;
            if let Ok((st, a)) = got {
                store = st;
                match a {
                    Some(Ok(a)) => {
                        if let Err(e) = crate::cluster::names::publish_aliases(etcd, &a).await {
                            tracing::warn!(error = %crate::errors::error_chain(&e),
                                "Service Connect: cannot publish the aliases to the boxes");
                        }
                    }
                    Some(Err(e)) => tracing::warn!(error = %crate::errors::error_chain(e.as_ref()),
                        "Service Connect: reading the services' aliases failed"),
                    None => {}
                }
            }
        }
        tokio::select! {
            r = leadership.changed() => if r.is_err() { return },
            r = applied.changed() => if r.is_err() { return },
            r = names.changed() => if r.is_err() { return },
            r = health.changed() => if r.is_err() { return },
            r = lbs.changed() => if r.is_err() { return },
            _ = tick.tick(), if leading => {}
        }
    }
}

/// ECS's events in EventBridge's shapes to the log group `/aws/events/ecs`
/// (`crate::ecs::events`), once a second.
async fn write_ecs_events(g: Ecs) {
    let watcher = Arc::new(std::sync::Mutex::new(crate::ecs::events::Watcher::default()));
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (g, watcher) = (g.clone(), watcher.clone());
        let done = tokio::task::spawn_blocking(move || {
            let now = chrono::Utc::now().timestamp_millis();
            let mut w = watcher.lock().unwrap_or_else(|e| e.into_inner());
            // Cluster mode: the tasks are the cluster's task records in etcd.
            let records = crate::cluster::serving().map(|etcd| {
                move |cluster: &str| crate::cluster::task_api::task_records(etcd, cluster)
            });
            let records = records
                .as_ref()
                .map(|f| f as crate::ecs::events::ClusterTasks<'_>);
            w.poll(&g, now, records)
        })
        .await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %crate::errors::error_chain(e.as_ref()), "ECS events: writing them to the log group failed");
        }
    }
}

/// ECS's service metrics (`crate::ecs::metrics`) and the load balancers'
/// (`crate::elb::meters`): three samples a metric period; after
/// each, the alarms are evaluated (CloudWatch evaluates them once a period) and the
/// scaling policies the alarms in ALARM name are run. Once a period (the first sample
/// in it), the Container Insights metrics of the clusters that turn them on
/// (`crate::ecs::insights`): the tasks' figures with their samples, ECS's counts here.
async fn publish_ecs_metrics(
    g: Ecs,
    cw: Arc<crate::cloudwatch::CloudWatch>,
    aas: Arc<crate::autoscaling::AutoScaling>,
    elb: Arc<crate::elb::Elb>,
) {
    let period = crate::config::get().metrics_period;
    let period_ms = i64::try_from(period.as_millis()).unwrap_or(60_000).max(1);
    let high_resolution = period < std::time::Duration::from_secs(60);
    let mut tick = tokio::time::interval(period / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let publisher = Arc::new(std::sync::Mutex::new(crate::ecs::metrics::Publisher::new()));
    let mut boxes = crate::cluster::metrics::Gatherer::default();
    let mut insights_period = None;
    loop {
        tick.tick().await;
        let now = chrono::Utc::now().timestamp_millis();
        let this_period = now.div_euclid(period_ms);
        let insights = if insights_period == Some(this_period) {
            Vec::new()
        } else {
            insights_period = Some(this_period);
            let g = g.clone();
            match tokio::task::spawn_blocking(move || crate::ecs::insights::clusters(&g)).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::warn!(error = %crate::errors::error_chain(e.as_ref()), "Container Insights: reading the clusters' settings failed");
                    Vec::new()
                }
                Err(_) => Vec::new(),
            }
        };
        // In cluster mode, the other boxes' tasks too (`crate::cluster::metrics`).
        let remote = match crate::cluster::serving() {
            Some(etcd) => boxes.gather(etcd, now, high_resolution, &insights).await,
            None => Default::default(),
        };
        let (g, cw, aas, publisher) = (g.clone(), cw.clone(), aas.clone(), publisher.clone());
        let elb = elb.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut p = publisher.lock().unwrap_or_else(|e| e.into_inner());
            let sampled = p.sample(&g, &cw.metrics, now, high_resolution, &insights);
            for (id, data) in &remote.metrics {
                cw.metrics.put(id, data, now);
            }
            if !insights.is_empty() {
                match crate::ecs::insights::counts(&g, &insights, now, high_resolution) {
                    Ok(counts) => {
                        for (id, data) in &counts {
                            cw.metrics.put(id, data, now);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %crate::errors::error_chain(e.as_ref()), "Container Insights: counting the clusters' tasks and services failed");
                    }
                }
            }
            // The load balancers' counts since the last sample (`elb::meters`): this
            // serve's listeners' and, in cluster mode, every box's.
            elb.publish(&cw.metrics, now, high_resolution, &remote.elb);
            evaluate_and_act(&g, &cw, &aas, now);
            sampled
        })
        .await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %crate::errors::error_chain(e.as_ref()), "ECS metrics: sampling the tasks failed");
        }
    }
}

/// Evaluates the alarms and runs what they and the schedules call for (`aas.tick`). In
/// `serve --cluster` only the leader does, under the control plane's write lock (on a copy
/// that has every earlier write, its changes published before the lock goes: a new
/// leader goes on from there), taken only when an alarm's state changes or an action is
/// due (docs/scaling.md "In a cluster").
fn evaluate_and_act(
    g: &Ecs,
    cw: &crate::cloudwatch::CloudWatch,
    aas: &crate::autoscaling::AutoScaling,
    now: i64,
) {
    let run = || {
        if let Err(e) = cw.alarms.evaluate(&cw.metrics, now) {
            tracing::warn!(error = %e, "CloudWatch: evaluating the alarms failed");
        }
        aas.tick(g, cw, now);
    };
    let Some(replica) = crate::cluster::replica::get() else {
        return run();
    };
    if !crate::cluster::leader::leading()
        || !(cw.alarms.would_change(&cw.metrics, now) || aas.due(cw, now))
    {
        return;
    }
    if let Err(e) = replica.write(run) {
        tracing::warn!(error = %crate::errors::error_chain(&e),
            "CloudWatch: the alarms were not evaluated under the cluster's write lock; again at the next sample");
    }
}

/// The tasks' DNS server on the task bridge's gateway (port 53; the bridge made if
/// missing), announced to the supervisors of new tasks, and what keeps the load
/// balancers' addresses and names in place. Without the DNS server (port 53 taken, no
/// root) tasks keep the host's resolvers, as before; it is logged.
async fn names_and_dns(
    g: &Ecs,
    records: Arc<crate::dns::Records>,
) -> (
    Option<crate::dns::Server>,
    Arc<std::sync::Mutex<crate::elb::names::Names>>,
) {
    let cfg = crate::config::get();
    if crate::cluster::serving().is_some() {
        // Cluster mode: the boxes' agents own their bridges (each with the subnet it
        // leased), so the addresses go on this box's loopback and no DNS server runs
        // (docs/load-balancing.md, "Cluster mode").
        let names = crate::elb::names::Names::new(
            crate::elb::names::Place::Link("lo".into()),
            cfg.hosts_file.clone(),
            &g.root,
            records,
        );
        return (None, Arc::new(std::sync::Mutex::new(names)));
    }
    let net = match crate::supervisor::isolation::network::open(
        &g.run_root,
        &cfg.bridge,
        cfg.subnet,
    ) {
        Ok(net) => match net.ensure_bridge() {
            Ok(()) => Some(net),
            Err(e) => {
                tracing::warn!(bridge = %cfg.bridge, error = %crate::errors::error_chain(&e), "cannot make the task bridge: load balancers unreachable by address, no DNS server for tasks");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %crate::errors::error_chain(&e), "cannot open the task network");
            None
        }
    };
    let mut dns = None;
    if net.is_some() {
        let addr = std::net::SocketAddr::from((cfg.subnet.gateway(), 53));
        let upstreams = Arc::new(crate::dns::Upstreams::new("/etc/resolv.conf".into()));
        let allowed = crate::dns::Allowed {
            net: cfg.subnet.network(),
            prefix: cfg.subnet.prefix(),
        };
        match crate::dns::Server::start(addr, records.clone(), upstreams, allowed).await {
            Ok(mut server) => {
                let marker = crate::dns::marker_path(
                    &crate::supervisor::isolation::network::state_dir(&g.run_root, &cfg.bridge),
                );
                match server.announce(&marker) {
                    Ok(()) => dns = Some(server),
                    Err(e) => {
                        tracing::warn!(error = %crate::errors::error_chain(&e), "cannot announce the DNS server to tasks")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %crate::errors::error_chain(&e), "no DNS server for tasks: they use the host's resolvers")
            }
        }
    }
    let place = match net {
        Some(net) => crate::elb::names::Place::Bridge(Box::new(net)),
        None => crate::elb::names::Place::Nowhere,
    };
    let names = crate::elb::names::Names::new(place, cfg.hosts_file.clone(), &g.root, records);
    (dns, Arc::new(std::sync::Mutex::new(names)))
}

/// The registry `serve` opened (ECR's API and the `/v2/` routes share it).
static REGISTRY: std::sync::OnceLock<Arc<crate::ecr::Registry>> = std::sync::OnceLock::new();

pub fn registry() -> Option<Arc<crate::ecr::Registry>> {
    REGISTRY.get().cloned()
}

/// `POST /`: the service and protocol the request speaks (`protocol::route`), then that
/// service's dispatcher: CloudWatch Logs (`Logs_20140328.`), ECS, or the awsQuery answer
/// that no service here speaks it yet.
async fn dispatch(
    state: axum::extract::State<Arc<Ecs>>,
    elb: Option<axum::Extension<Arc<crate::elb::Elb>>>,
    cloudmap: Option<axum::Extension<Arc<crate::servicediscovery::CloudMap>>>,
    metrics: Option<axum::Extension<Arc<crate::cloudwatch::CloudWatch>>>,
    aas: Option<axum::Extension<Arc<crate::autoscaling::AutoScaling>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use crate::ecs::table::Service;
    use protocol::Route;
    match protocol::route(&headers, &body) {
        Route::Json {
            service: Service::CloudWatch,
            protocol,
            operation,
        } => match metrics {
            Some(axum::Extension(m)) => {
                cloudwatch::handle(m, protocol, operation, &headers, body).await
            }
            None => aws_error(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServiceFault",
                "CloudWatch's metric store is not open on this serve",
            ),
        },
        Route::Json {
            service: Service::AutoScaling,
            operation,
            ..
        } => match (aas, metrics) {
            (Some(axum::Extension(a)), Some(axum::Extension(m))) => {
                autoscaling::handle(a, state.0, m, operation, body).await
            }
            _ => aws_error(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServiceException",
                "Application Auto Scaling is not open on this serve",
            ),
        },
        Route::Json {
            service: Service::Logs,
            operation,
            ..
        } => logs::handle(state.0, operation, body).await,
        Route::Json {
            service: Service::Ecr,
            operation,
            ..
        } => {
            let host = headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string);
            ecr::handle(state.0, operation, body, host).await
        }
        Route::Json {
            service: Service::CloudMap,
            operation,
            ..
        } => match cloudmap {
            Some(axum::Extension(cm)) => servicediscovery::handle(cm, operation, body).await,
            None => aws_error(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                "Cloud Map's resources are not open on this serve",
            ),
        },
        Route::Query {
            signing_name,
            action,
            version,
        } => match protocol::query_service(signing_name.as_deref(), version.as_deref()) {
            Some(Service::Elb) => match elb.as_ref() {
                Some(axum::Extension(elb)) => elb::handle(elb.clone(), action, body).await,
                None => protocol::no_query_service(signing_name.as_deref(), &action),
            },
            _ => protocol::no_query_service(signing_name.as_deref(), &action),
        },
        Route::Json {
            service: Service::Ecs | Service::Elb,
            ..
        }
        | Route::Unknown => ecs::handle(state, headers, body).await,
    }
}

/// `POST /service/<service>/operation/<op>`: an RPC v2 CBOR call (CloudWatch's first
/// protocol); a service that does not speak it here is answered as RPC v2 answers an
/// unknown operation.
async fn rpc_v2(
    axum::extract::Path((service, operation)): axum::extract::Path<(String, String)>,
    metrics: Option<axum::Extension<Arc<crate::cloudwatch::CloudWatch>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use crate::ecs::table::Service;
    match (protocol::rpc_v2_route(&service, &operation), metrics) {
        (Some((Service::CloudWatch, op)), Some(axum::Extension(m))) => {
            cloudwatch::handle(m, protocol::Protocol::RpcV2Cbor, op, &headers, body).await
        }
        _ => {
            cloudwatch::cbor_error(aws_error(
                axum::http::StatusCode::NOT_FOUND,
                "UnknownOperationException",
                &format!(
                    "{service}.{operation}: no service answers this RPC v2 CBOR operation here \
                 (CloudWatch's GraniteServiceVersion20100801 does; see docs/serve.md)"
                ),
            ))
            .await
        }
    }
}

pub(crate) use protocol::{aws_error, aws_json};

/// Runs operation `op` of the core's table for a caller over the API: its JSON request
/// `body` decoded into the operation's request type, its response encoded as AWS JSON 1.1
/// (timestamps as epoch seconds: `taskdef::timestamp`).
pub fn call_json(
    ecs: &Ecs,
    op: crate::ecs::operations::Op,
    body: &[u8],
) -> Result<serde_json::Value, crate::ecs::operations::ServiceError> {
    use crate::ecs::operations::{Caller, Context, Operation, ServiceError, Visitor};
    struct Json<'a> {
        cx: Context<'a>,
        body: &'a [u8],
    }
    impl Visitor for Json<'_> {
        type Out = Result<serde_json::Value, ServiceError>;
        fn visit<O: Operation>(self) -> Self::Out {
            let req = O::decode(self.body).map_err(Into::into)?;
            let slug = match O::OP.service() {
                crate::ecs::operations::Service::Logs => "logs",
                _ => "ecs",
            };
            coverage::report_bytes(slug, O::OP.name(), self.body);
            let resp = O::call(&self.cx, req).map_err(Into::into)?;
            let v = crate::taskdef::timestamp::epoch_seconds(|| serde_json::to_value(resp));
            v.map_err(|e| match O::OP.service() {
                crate::ecs::operations::Service::Ecs => {
                    ServiceError::Ecs(crate::ecs::EcsError::Server(
                        anyhow::Error::from(e).context("failed to encode the response"),
                    ))
                }
                crate::ecs::operations::Service::Logs => {
                    ServiceError::Logs(crate::logs::LogsError::Encode(e))
                }
                // No row of the table is ECR's (crate::ecr::api has its own), nor ELB's
                // (crate::elb::ops answers it), CloudWatch's or Application Auto Scaling's.
                crate::ecs::operations::Service::Ecr
                | crate::ecs::operations::Service::Elb
                | crate::ecs::operations::Service::CloudWatch
                | crate::ecs::operations::Service::AutoScaling
                | crate::ecs::operations::Service::CloudMap => {
                    ServiceError::Ecs(crate::ecs::EcsError::Server(
                        anyhow::Error::from(e).context("failed to encode the response"),
                    ))
                }
            })
        }
    }
    let cx = Context {
        ecs,
        caller: Caller::Api,
    };
    op.visit(Json { cx, body })
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

/// The front-end a cluster agent's endpoint runs behind: serve's TLS, guard (without keys:
/// the endpoint checks the cluster's signature per route) and connection loop, and the
/// console's task views ([`crate::cluster::endpoint::Front`]).
pub fn agent_front() -> crate::cluster::endpoint::Front {
    crate::cluster::endpoint::Front {
        tls_acceptor: server::tls_acceptor,
        task_view: console::task_view,
        run: |listener, tls, app| {
            let limits = guard::Limits::default();
            let app = app.layer(axum::middleware::from_fn_with_state(
                std::sync::Arc::new(guard::Guard::new(None, limits)),
                guard::guard,
            ));
            Box::pin(server::run(
                listener,
                tls,
                app,
                limits,
                std::future::pending(),
            ))
        },
    }
}
