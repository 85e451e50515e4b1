//! Elastic Load Balancing v2 (application and network load balancers): the API's core
//! (load balancers, target groups, listeners, targets and their health: `ops`; listener
//! rules: `rule_ops`, their conditions and actions: `rules`), the
//! resources (`model`), awsQuery's encoding (`query`) and ELB's errors (`error`).
//! `serve` holds one [`Elb`]; every change is written through to the store
//! (`elb_resources`), so a restarted `serve` has the same resources. docs/load-balancing.md
//! says what is served and what is not.

mod balance;
pub mod bluegreen;
mod checks;
pub mod dataplane;
mod desync;
mod drain;
pub mod error;
mod h1;
pub mod health;
pub mod history;
pub mod meters;
pub mod model;
pub mod names;
pub mod ops;
mod proxy;
mod proxy_protocol;
pub mod query;
mod routing;
mod rule_ops;
pub mod rules;
mod setting_ops;
pub mod snapshot;
mod sticky;

pub use error::{ElbError, ElbResult};
use model::{Listener, LoadBalancer, Target, TargetGroup};
use routing::Miss;
use std::collections::BTreeMap;

/// The maps a request looks in (`Elb::route`), with foldhash's quick seeded hash: their
/// keys are ARNs, which SipHash made a visible share of a proxied request's CPU.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

/// The load balancers of one `serve`.
pub struct Elb {
    root: PathBuf,
    aws: crate::taskdef::AwsContext,
    /// Written by the API, the health checks and the store's reads; read by the data
    /// plane's threads, a request at a time (`route`), which change only what is atomic or
    /// behind a lock of its own in it: two data-plane threads never wait on each other
    /// for a route (with one lock for all, a thread taken off its core while routing held
    /// every request of the other thread: the HTTP listener's p99, docs/load-balancing.md
    /// "Speed").
    state: RwLock<State>,
    /// Counts the changes of the resources: the data plane's listeners and health checks
    /// follow it.
    generation: tokio::sync::watch::Sender<u64>,
    /// Whether this serve runs the data plane (always on one box; the leader's in
    /// cluster mode).
    active: AtomicBool,
    /// Whether the resources follow the store's changes by other connections (the
    /// cluster's replica; on one box the CLI's verbs).
    follows: AtomicBool,
    /// Counts the targets' health changes (the leader publishes them to the others).
    health_generation: tokio::sync::watch::Sender<u64>,
    /// Each target's changes of health (the console's).
    history: Mutex<history::History>,
    /// `serve`'s writes of them to the store.
    history_writer: history::Writer,
}

/// One target's health as the serve that runs the checks publishes it (cluster mode:
/// the others answer DescribeTargetHealth from it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PublishedHealth {
    pub group: String,
    pub target: Target,
    pub state: String,
    pub reason: Option<String>,
    pub description: Option<String>,
    /// A deregistered target's drain: how long it has still to go, in milliseconds
    /// (absent for a registered target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_for_ms: Option<u64>,
}

/// `s` as a `&'static str`: one of the few states and reason codes there are, kept once.
fn interned(s: &str) -> &'static str {
    static SEEN: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(x) = seen.iter().find(|x| **x == s) {
        return x;
    }
    let x: &'static str = Box::leak(s.to_string().into_boxed_str());
    seen.push(x);
    x
}

/// A target's health as the load balancer sees it (API_TargetHealth).
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub state: &'static str,
    pub reason: Option<&'static str>,
    pub description: Option<String>,
    /// Consecutive passed and failed checks (the thresholds count them).
    pub passed: i64,
    pub failed: i64,
}

impl Health {
    pub fn initial() -> Health {
        Health {
            state: "initial",
            reason: Some("Elb.RegistrationInProgress"),
            description: Some("Target registration is in progress".into()),
            passed: 0,
            failed: 0,
        }
    }

    fn unused_not_in_use() -> Health {
        Health {
            state: "unused",
            reason: Some("Target.NotInUse"),
            description: Some(
                "Target group is not configured to receive traffic from the load balancer".into(),
            ),
            passed: 0,
            failed: 0,
        }
    }

    fn not_registered() -> Health {
        Health {
            state: "unused",
            reason: Some("Target.NotRegistered"),
            description: Some("Target is not registered to the target group".into()),
            passed: 0,
            failed: 0,
        }
    }

    fn draining() -> Health {
        Health {
            state: "draining",
            reason: Some("Target.DeregistrationInProgress"),
            description: Some("Target deregistration is in progress".into()),
            passed: 0,
            failed: 0,
        }
    }
}

/// A target deregistered from a group in use: it drains until `until`.
#[derive(Debug, Clone)]
pub struct Draining {
    pub group: String,
    pub target: Target,
    pub until: Instant,
    /// What the data plane counted of the target while it was registered: its TCP
    /// connections are cut through it (`deregistration_delay.connection_termination`).
    pub load: Option<std::sync::Arc<balance::Load>>,
}

#[derive(Default)]
struct State {
    lbs: BTreeMap<String, LoadBalancer>,
    groups: BTreeMap<String, TargetGroup>,
    listeners: BTreeMap<String, Listener>,
    /// The listeners' rules (not their default rules: those are the listeners' default
    /// actions).
    rules: BTreeMap<String, model::Rule>,
    /// The health of each registered target of a group in use, by (group, target).
    health: HashMap<(String, Target), Health>,
    draining: Vec<Draining>,
    /// The next target of each group (round robin).
    next: HashMap<String, AtomicUsize>,
    /// What the data plane counts (CloudWatch's ELB metrics).
    meters: meters::Meters,
    /// The targets in slow start, until when (`sticky::slow_start`).
    slow: HashMap<(String, Target), Instant>,
    /// The key of the sticky sessions' cookies.
    key: sticky::Key,
    /// What the data plane counts per target of the groups whose routing algorithm needs
    /// it (`balance`), by group.
    loads: HashMap<String, HashMap<Target, std::sync::Arc<balance::Load>>>,
    /// Anomaly detection of HTTP groups that had traffic (and the automatic target
    /// weights of `weighted_random` groups with anomaly mitigation).
    /// Looked at by one data-plane thread at a time, once a second, the others going on
    /// with the weights as they were (`try_write`).
    anomalies: HashMap<String, RwLock<balance::Anomalies>>,
    /// `source_ip` stickiness (network load balancers): the target of each client
    /// address, by group.
    by_source: Mutex<HashMap<String, HashMap<std::net::IpAddr, Target>>>,
    /// Used under the write lock only; a `Mutex` because a connection is not `Sync`
    /// (uncontended: its users hold the write lock).
    store: Mutex<Option<crate::store::Store>>,
    /// The EC2 instances an `instance` target may name, and the address each is reached
    /// at: this box at 127.0.0.1 on one box; each box of a cluster at its address
    /// (`Elb::set_instances`).
    instances: HashMap<String, std::net::IpAddr>,
    /// The store's `data_version` when the resources were read.
    seen: i64,
}

impl Elb {
    /// The load balancers stored under `root` (none the first time).
    pub fn open(root: PathBuf) -> anyhow::Result<Elb> {
        let store = crate::store::Store::open(&root)?;
        let mut state = State::default();
        state.load(&store)?;
        state.seen = data_version(&store);
        let me = store
            .ec2_instance_id()
            .map_err(|e| anyhow::anyhow!("{}", crate::errors::error_chain(&e)))?;
        state
            .instances
            .insert(me, std::net::Ipv4Addr::LOCALHOST.into());
        state.store = Mutex::new(Some(store));
        let elb = Elb {
            root,
            aws: crate::taskdef::AwsContext::from_env(),
            state: RwLock::new(state),
            generation: tokio::sync::watch::Sender::new(0),
            active: AtomicBool::new(true),
            follows: AtomicBool::new(false),
            health_generation: tokio::sync::watch::Sender::new(0),
            history: Mutex::new(history::History::default()),
            history_writer: history::Writer::default(),
        };
        elb.with(|s| {
            s.refresh_health();
            Ok(())
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(elb)
    }

    /// `serve --cluster`: the resources are the cluster's (rows another serve writes into
    /// this serve's store, `crate::cluster::replica`), so they are read again whenever
    /// the store changed under them; and the data plane (listeners, addresses, names,
    /// health checks) runs only while `set_active(true)` (the leader's).
    pub fn follow_store(&self) {
        self.follows.store(true, Ordering::SeqCst);
        self.set_active(false);
    }

    /// One box: the resources follow the store's changes by other processes too (the
    /// CLI's `elbv2` verbs), while this serve keeps running the data plane.
    pub fn follow_writes(&self) {
        self.follows.store(true, Ordering::SeqCst);
    }

    /// Runs the data plane (true) or not: bindings, names and checks are none while
    /// inactive, so the listeners stop and the addresses and names go.
    pub fn set_active(&self, active: bool) {
        if self.active.swap(active, Ordering::SeqCst) != active {
            tracing::info!(active, "load balancers' data plane on this serve");
            self.changed();
        }
    }

    fn active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// With [`Self::follow_store`] or [`Self::follow_writes`]: reads the resources again
    /// when another connection (the replica, the CLI) changed the store since they were read; tells the data plane.
    pub fn sync(&self) -> ElbResult<()> {
        if !self.follows.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.with(|_| Ok(()))
    }

    /// `serve --cluster`: the boxes' EC2 instance ids and their addresses (from their
    /// registrations), in place of this box's own.
    pub fn set_instances(&self, instances: std::collections::HashMap<String, std::net::IpAddr>) {
        let instances: HashMap<String, std::net::IpAddr> = instances.into_iter().collect();
        let changed = {
            let mut s = self.lock();
            let changed = s.instances != instances;
            s.instances = instances;
            changed
        };
        if changed {
            self.changed();
        }
    }

    /// Tells the data plane the resources changed, and records the targets' health as it
    /// is now (a target registered here is `initial` in the history even when its first
    /// check passes before the history's task runs).
    fn changed(&self) {
        self.record_history();
        self.generation.send_modify(|g| *g += 1);
    }

    /// Follows the changes (a new value on each).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Runs `f` on the resources as stored: read again first when another process (the
    /// CLI's verbs, the cluster's replica) changed the store since they were read.
    fn with<T>(&self, f: impl FnOnce(&mut State) -> ElbResult<T>) -> ElbResult<T> {
        self.with_store(false, f)
    }

    /// As [`Self::with`], `f` changing the resources: in one write transaction from the
    /// read to the write, so that a write of another process (the CLI's, serve's) is read
    /// before or comes after, and never lost under this one.
    fn write<T>(&self, f: impl FnOnce(&mut State) -> ElbResult<T>) -> ElbResult<T> {
        self.with_store(true, f)
    }

    fn with_store<T>(
        &self,
        write: bool,
        f: impl FnOnce(&mut State) -> ElbResult<T>,
    ) -> ElbResult<T> {
        let mut s = self.lock();
        let held = s.store.get_mut().unwrap_or_else(|p| p.into_inner());
        if held.is_none() {
            *held = Some(crate::store::Store::open(&self.root)?);
        }
        if write {
            s.store().begin_elb_write()?;
        }
        let out = Self::read_again(&mut s).and_then(|reloaded| Ok((reloaded, f(&mut s)?)));
        if write {
            let ended = s.store().end_elb_write(out.is_ok());
            if out.is_ok() {
                ended?;
            }
        }
        drop(s);
        let (reloaded, v) = out?;
        if reloaded {
            self.changed();
        }
        Ok(v)
    }

    /// Reads the resources again when another connection changed the store since they
    /// were read (targets gone from their groups drain: `State::follow_registrations`);
    /// whether it did.
    fn read_again(s: &mut State) -> ElbResult<bool> {
        let now = data_version(&s.store());
        if now == s.seen {
            return Ok(false);
        }
        let held = s.store.get_mut().unwrap_or_else(|p| p.into_inner());
        let store = held.take().expect("the ELB state holds its store");
        let before = s.registrations();
        let loaded = s.load(&store);
        *s.store.get_mut().unwrap_or_else(|p| p.into_inner()) = Some(store);
        loaded.map_err(|e| ElbError::Internal(format!("{e:#}")))?;
        s.seen = now;
        s.follow_registrations(before);
        s.refresh_health();
        Ok(true)
    }
}

/// The type (`ip`, `instance`) of target group `arn` as stored, if it exists: ECS checks
/// a service's target groups against its tasks' network mode.
pub fn stored_target_type(store: &crate::store::Store, arn: &str) -> Option<String> {
    let mut s = State::default();
    s.load(store).ok()?;
    s.groups.get(arn).map(|g| g.target_type.clone())
}

/// A group's registrations as serve read them: its ARN, its targets with their
/// registration numbers, and whether a listener used it.
type Registrations = (String, Vec<(Target, u64)>, bool);

/// SQLite's count of the commits other connections made to `store`'s database.
fn data_version(store: &crate::store::Store) -> i64 {
    store.data_version().unwrap_or(-1)
}

impl State {
    /// Replaces the resources with those stored in `store` (health and draining kept for
    /// what is still there: `refresh_health`).
    fn load(&mut self, store: &crate::store::Store) -> anyhow::Result<()> {
        use anyhow::Context;
        self.lbs.clear();
        self.groups.clear();
        self.listeners.clear();
        self.rules.clear();
        for (kind, arn, doc) in store.elb_resources()? {
            let msg = format!("stored ELB {kind} {arn} does not decode");
            let bad = || msg.clone();
            match kind.as_str() {
                "loadbalancer" => {
                    self.lbs
                        .insert(arn, serde_json::from_str(&doc).with_context(bad)?);
                }
                "targetgroup" => {
                    self.groups
                        .insert(arn, serde_json::from_str(&doc).with_context(bad)?);
                }
                "listener" => {
                    self.listeners
                        .insert(arn, serde_json::from_str(&doc).with_context(bad)?);
                }
                "rule" => {
                    self.rules
                        .insert(arn, serde_json::from_str(&doc).with_context(bad)?);
                }
                _ => anyhow::bail!("stored ELB resource {arn} is of unknown kind {kind}"),
            }
        }
        Ok(())
    }

    fn store(&self) -> Held<'_> {
        Held(self.store.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn save_lb(&self, lb: &LoadBalancer) -> ElbResult<()> {
        self.put("loadbalancer", &lb.arn, lb)
    }

    fn save_group(&self, g: &TargetGroup) -> ElbResult<()> {
        self.put("targetgroup", &g.arn, g)
    }

    fn save_listener(&self, l: &Listener) -> ElbResult<()> {
        self.put("listener", &l.arn, l)
    }

    fn save_rule(&self, r: &model::Rule) -> ElbResult<()> {
        self.put("rule", &r.arn, r)
    }

    /// Deletes listener `arn` with its rules.
    fn delete_listener(&mut self, arn: &str) -> ElbResult<()> {
        let rules: Vec<String> = self
            .rules
            .values()
            .filter(|r| r.listener_arn == arn)
            .map(|r| r.arn.clone())
            .collect();
        for r in rules {
            self.delete(&r)?;
            self.rules.remove(&r);
        }
        self.delete(arn)?;
        self.listeners.remove(arn);
        Ok(())
    }

    fn put(&self, kind: &str, arn: &str, v: &impl serde::Serialize) -> ElbResult<()> {
        let doc = serde_json::to_string(v)
            .map_err(|e| ElbError::Internal(format!("failed to encode {arn}: {e}")))?;
        Ok(self.store().put_elb_resource(kind, arn, &doc)?)
    }

    fn delete(&self, arn: &str) -> ElbResult<()> {
        Ok(self.store().delete_elb_resource(arn)?)
    }

    /// The load balancers whose listeners (default actions or rules) forward to group `arn`.
    fn lbs_of_group(&self, arn: &str) -> Vec<String> {
        let uses = |actions: &[model::Action]| actions.iter().any(|a| a.groups().contains(&arn));
        let mut out: Vec<String> = self
            .listeners
            .values()
            .filter(|l| {
                uses(&l.default_actions)
                    || self
                        .rules
                        .values()
                        .any(|r| r.listener_arn == l.arn && uses(&r.actions))
            })
            .map(|l| l.load_balancer_arn.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The registrations as serve last read or made them: each group's targets, and whether
    /// a listener used the group (`follow_registrations` compares the store's with them).
    fn registrations(&self) -> Vec<Registrations> {
        self.groups
            .values()
            .map(|g| {
                let in_use = !self.lbs_of_group(&g.arn).is_empty();
                let targets = g
                    .targets
                    .iter()
                    .map(|t| (t.clone(), g.registration_of(t)))
                    .collect();
                (g.arn.clone(), targets, in_use)
            })
            .collect()
    }

    /// After reading the store again (the CLI's verbs, another serve of a cluster): a
    /// target of `before` no longer registered in its group, which is still there, was
    /// deregistered by another process, and drains as if DeregisterTargets had come here
    /// (in use as serve last saw its group: what serve was routing to); a target registered
    /// again stops draining, as RegisterTargets does. A target registered under a new
    /// number (deregistered and registered again between two reads) left too: it drains,
    /// stops, and is `initial` again, as the two calls would have made it here. The targets
    /// of a deleted group do not drain (a deleted group's draining ends: `refresh_health`).
    fn follow_registrations(&mut self, before: Vec<Registrations>) {
        for (arn, targets, in_use) in before {
            let Some(g) = self.groups.get(&arn).cloned() else {
                continue;
            };
            let left: Vec<Target> = targets
                .into_iter()
                .filter(|(t, n)| {
                    !g.targets
                        .iter()
                        .any(|o| ops::same(o, t) && g.registration_of(o) == *n)
                })
                .map(|(t, _)| t)
                .collect();
            for t in &left {
                // Its health was the former registration's.
                self.health
                    .retain(|(a, o), _| !(a == &arn && ops::same(o, t)));
            }
            self.drain(&g, left, in_use);
        }
        let registered: Vec<(String, Target)> = self
            .groups
            .values()
            .flat_map(|g| g.targets.iter().map(|t| (g.arn.clone(), t.clone())))
            .collect();
        for (g, t) in registered {
            self.stop_draining(&g, &t);
        }
    }

    /// Brings the health table in line with the registrations: a target of a group in
    /// use starts `initial`; a group no listener uses has no health (its targets are
    /// `unused`, Target.NotInUse); targets no longer registered are forgotten.
    fn refresh_health(&mut self) {
        let mut keep = HashMap::default();
        for g in self.groups.values() {
            if self.lbs_of_group(&g.arn).is_empty() {
                continue;
            }
            for t in &g.targets {
                let key = (g.arn.clone(), t.clone());
                let h = self.health.remove(&key).unwrap_or_else(Health::initial);
                keep.insert(key, h);
            }
        }
        self.health = keep;
        let groups = &self.groups;
        self.draining.retain(|d| groups.contains_key(&d.group));
        // Counts and bindings of targets no longer registered go.
        let registered = |g: &str, t: &Target| groups.get(g).is_some_and(|g| g.targets.contains(t));
        self.loads.retain(|g, m| {
            m.retain(|t, _| registered(g, t));
            !m.is_empty()
        });
        self.anomalies.retain(|g, _| groups.contains_key(g));
        let by_source = self.by_source.get_mut().unwrap_or_else(|p| p.into_inner());
        by_source.retain(|g, m| {
            m.retain(|_, t| registered(g, t));
            !m.is_empty()
        });
    }

    /// The health DescribeTargetHealth reports for target `t` of group `g`.
    fn health_of(&self, g: &TargetGroup, t: &Target, now: Instant) -> Health {
        if self
            .draining
            .iter()
            .any(|d| d.group == g.arn && &d.target == t && d.until > now)
        {
            return Health::draining();
        }
        if !g.targets.contains(t) {
            return Health::not_registered();
        }
        if self.lbs_of_group(&g.arn).is_empty() {
            return Health::unused_not_in_use();
        }
        self.health
            .get(&(g.arn.clone(), t.clone()))
            .cloned()
            .unwrap_or_else(Health::initial)
    }
}

/// `n` random bytes as hex (ids in ARNs and DNS names).
fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    let _ = getrandom::getrandom(&mut b);
    hex::encode(b)
}

/// Where a new request or connection goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Pick {
    /// A target, the cookies its answer sets (sticky sessions), the request's hold on
    /// the target's load (`balance`: held until the response ends), and whether the
    /// connection to it starts with a PROXY protocol v2 header (its group's
    /// `proxy_protocol_v2.enabled`: TCP groups).
    Target(std::net::SocketAddr, Stick, balance::Outstanding, bool),
    /// The group has no registered target (ALB answers 503).
    NoTarget,
    /// The listener is gone.
    Gone,
    /// A fixed-response action's answer.
    Fixed {
        status: u16,
        content_type: Option<String>,
        body: String,
    },
    /// A redirect action's answer: 301 or 302 to `location`.
    Redirect { status: u16, location: String },
}

/// The sticky sessions' cookies of one forwarded request (`sticky`): `Set-Cookie` values
/// to add to the answer, and those to add if the target's answer sets the application's
/// cookie (`app_cookie` stickiness).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stick {
    pub set_cookies: Vec<String>,
    pub app: Option<(String, Vec<String>)>,
}

/// A listener the data plane runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Binding {
    pub listener: String,
    pub addr: std::net::SocketAddr,
    pub protocol: String,
}

/// A health check the data plane runs: group, target, its settings, where it connects,
/// and whether its connection starts with a PROXY protocol v2 header (LOCAL).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Check {
    pub group: String,
    pub target: Target,
    pub settings: model::HealthCheck,
    pub addr: std::net::SocketAddr,
    pub proxy_v2: bool,
}

/// Whether group `g`'s connections to its targets start with a PROXY protocol v2 header
/// (an attribute of TCP groups only).
fn proxy_protocol_v2(g: &TargetGroup) -> bool {
    g.protocol == "TCP"
        && g.attributes
            .get("proxy_protocol_v2.enabled")
            .is_some_and(|v| v == "true")
}

/// Where traffic for target `t` goes: its IP address (`ip` groups), or the address of
/// the box with its instance id (`instance` groups: 127.0.0.1 for this box on one box).
/// An instance no box has (any more) is reached nowhere: port 0 of loopback, which
/// refuses every connection (the check fails, a request gets 502).
/// A (group, target) key of the tables by group and target (`State::health`, `State::slow`),
/// looked up from borrowed parts: `(String, Target)` borrows as it, hashes and compares as
/// the pair does (a tuple hashes field by field; a `String` as its `str`).
trait GroupTarget {
    fn group(&self) -> &str;
    fn target(&self) -> &Target;
}

impl GroupTarget for (String, Target) {
    fn group(&self) -> &str {
        &self.0
    }
    fn target(&self) -> &Target {
        &self.1
    }
}

impl GroupTarget for (&str, &Target) {
    fn group(&self) -> &str {
        self.0
    }
    fn target(&self) -> &Target {
        self.1
    }
}

impl<'a> std::borrow::Borrow<dyn GroupTarget + 'a> for (String, Target) {
    fn borrow(&self) -> &(dyn GroupTarget + 'a) {
        self
    }
}

impl std::hash::Hash for dyn GroupTarget + '_ {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.group().hash(h);
        self.target().hash(h);
    }
}

impl PartialEq for dyn GroupTarget + '_ {
    fn eq(&self, o: &Self) -> bool {
        self.group() == o.group() && self.target() == o.target()
    }
}

impl Eq for dyn GroupTarget + '_ {}

fn target_addr(
    instances: &HashMap<String, std::net::IpAddr>,
    g: &TargetGroup,
    t: &Target,
    port: u16,
) -> std::net::SocketAddr {
    let nowhere = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
    if g.target_type == "ip" {
        return match t.id.parse::<std::net::IpAddr>() {
            Ok(ip) => std::net::SocketAddr::new(ip, port),
            Err(_) => nowhere,
        };
    }
    match instances.get(&t.id) {
        Some(ip) => std::net::SocketAddr::new(*ip, port),
        None => nowhere,
    }
}

/// The loads of targets `from` of group `arn`; None when one has none yet
/// (`State::make` makes them).
fn loads_of<'a>(
    loads: &'a HashMap<String, HashMap<Target, std::sync::Arc<balance::Load>>>,
    arn: &str,
    from: &[&'a Target],
) -> Option<Vec<(&'a Target, &'a balance::Load)>> {
    let m = loads.get(arn)?;
    from.iter().map(|t| Some((*t, &**m.get(*t)?))).collect()
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::getrandom(&mut b);
    u32::from_le_bytes(b)
}

impl Elb {
    fn lock(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The resources to route by: shared with the other data-plane threads.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// What the client connections of `listener` follow of its load balancer's
    /// attributes (ModifyLoadBalancerAttributes; ALB's defaults otherwise).
    pub(crate) fn http_settings(&self, listener: &str) -> proxy::Settings {
        let mut set = proxy::Settings::default();
        let s = self.read();
        let Some(lb) = s
            .listeners
            .get(listener)
            .and_then(|l| s.lbs.get(&l.load_balancer_arn))
        else {
            return set;
        };
        let secs = |k: &str| {
            lb.attributes
                .get(k)
                .and_then(|v| v.parse::<u64>().ok())
                .map(std::time::Duration::from_secs)
        };
        if let Some(d) = secs("idle_timeout.timeout_seconds") {
            set.idle = d;
        }
        if let Some(d) = secs("client_keep_alive.seconds") {
            set.keep_alive_for = d;
        }
        let on = |k: &str| lb.attributes.get(k).map(|v| v == "true");
        set.xff_port = on("routing.http.xff_client_port.enabled").unwrap_or(false);
        set.preserve_host = on("routing.http.preserve_host_header.enabled").unwrap_or(false);
        set.drop_invalid = on("routing.http.drop_invalid_header_fields.enabled").unwrap_or(false);
        set.xff = match lb
            .attributes
            .get("routing.http.xff_header_processing.mode")
            .map(String::as_str)
        {
            Some("preserve") => proxy::Xff::Preserve,
            Some("remove") => proxy::Xff::Remove,
            _ => proxy::Xff::Append,
        };
        let desync = lb.attributes.get("routing.http.desync_mitigation_mode");
        set.desync = desync::Mode::of(desync.map(String::as_str));
        set
    }

    /// What `listener`'s requests count on before a route chose their actions (a request
    /// the load balancer refuses, or counts as not compliant, before it is routed).
    pub(crate) fn listener_meter(
        &self,
        listener: &str,
    ) -> Option<std::sync::Arc<meters::ListenerMeter>> {
        if let Some(m) = self.read().meters.find_listener(listener) {
            return Some(m);
        }
        let mut s = self.lock();
        if !s.listeners.contains_key(listener) {
            return None;
        }
        s.make(&Miss {
            listener: listener.to_string(),
            group: None,
        });
        s.meters.find_listener(listener)
    }

    /// The listeners to run, each on its load balancer's address.
    pub fn bindings(&self) -> Vec<Binding> {
        if !self.active() {
            return Vec::new();
        }
        let s = self.lock();
        s.listeners
            .values()
            .filter_map(|l| {
                let lb = s.lbs.get(&l.load_balancer_arn)?;
                Some(Binding {
                    listener: l.arn.clone(),
                    addr: (model::address(lb), l.port).into(),
                    protocol: l.protocol.clone(),
                })
            })
            .collect()
    }

    /// What a new request on `listener` gets: the actions of its first rule (by priority)
    /// whose conditions the request meets all of, else its default actions (ALB's order,
    /// listener-update-rules.html). A forward goes to a group (by weight), then to its
    /// healthy targets in turn; with fewer healthy than the group's minimum (one by
    /// default: `balance::minimum_healthy`), to every registered one (ELB fails open); a
    /// group without targets is [`Pick::NoTarget`]. A TCP connection (`req`
    /// None) gets the default actions (TCP listeners have no rules); `client` is its
    /// client's address (`source_ip` stickiness). `meter` becomes what
    /// the request or connection counts on: its listener's meter, and its target group's
    /// when it goes to a target.
    pub fn route(
        &self,
        listener: &str,
        req: Option<&rules::Request>,
        client: std::net::IpAddr,
        meter: &mut meters::Meter,
    ) -> Pick {
        if let Ok(pick) = self.read().route(listener, req, client, meter) {
            return pick;
        }
        // What the data plane keeps of a listener and a group (its meters, its turn, its
        // targets' counts) is made on their first request, under the write lock.
        let mut s = self.lock();
        loop {
            match s.route(listener, req, client, meter) {
                Ok(pick) => return pick,
                Err(miss) if s.make(&miss) => {}
                Err(_) => return Pick::Gone,
            }
        }
    }
}

/// The ELB state's store, as [`State::store`] lends it.
struct Held<'a>(std::sync::MutexGuard<'a, Option<crate::store::Store>>);

impl std::ops::Deref for Held<'_> {
    type Target = crate::store::Store;
    fn deref(&self) -> &crate::store::Store {
        self.0.as_ref().expect("the ELB state holds its store")
    }
}

impl Elb {
    /// The health checks to run: each registered target of each group in use.
    pub fn checks(&self) -> Vec<Check> {
        if !self.active() {
            return Vec::new();
        }
        let s = self.lock();
        let mut out = Vec::new();
        for g in s.groups.values() {
            if s.lbs_of_group(&g.arn).is_empty() {
                continue;
            }
            for t in &g.targets {
                let port = g.health.port.parse().unwrap_or(t.port);
                out.push(Check {
                    group: g.arn.clone(),
                    target: t.clone(),
                    settings: g.health.clone(),
                    addr: target_addr(&s.instances, g, t, port),
                    proxy_v2: proxy_protocol_v2(g),
                });
            }
        }
        out
    }

    /// One health check's outcome: Ok, or the reason code and description of the failure.
    /// A new target is healthy after one passed check; a target becomes unhealthy after
    /// the unhealthy threshold of failed checks, and healthy again after the healthy
    /// threshold of passed ones (API_TargetHealth, target-group-health-checks.html).
    pub fn report(&self, c: &Check, outcome: Result<(), (&'static str, String)>) {
        let mut s = self.lock();
        let key = (c.group.clone(), c.target.clone());
        let Some(h) = s.health.get_mut(&key) else {
            return;
        };
        let (was, was_reason) = (h.state, h.reason);
        match outcome {
            Ok(()) => {
                h.failed = 0;
                h.passed += 1;
                if h.state == "initial" || h.passed >= c.settings.healthy {
                    *h = Health {
                        state: "healthy",
                        reason: None,
                        description: None,
                        passed: h.passed,
                        failed: 0,
                    };
                }
            }
            Err((reason, description)) => {
                h.passed = 0;
                h.failed += 1;
                if h.state == "initial" && h.failed < c.settings.unhealthy {
                    h.reason = Some("Elb.InitialHealthChecking");
                    h.description = Some("Initial health checks in progress".into());
                } else if h.state == "unhealthy" || h.failed >= c.settings.unhealthy {
                    h.state = "unhealthy";
                    h.reason = Some(reason);
                    h.description = Some(description);
                }
            }
        }
        let (now_state, now_reason) = (h.state, h.reason);
        if was != now_state {
            // Slow start: a target that turns healthy while another healthy target of its
            // group is out of slow start enters it; one that stops being healthy leaves it.
            let now = Instant::now();
            if now_state == "healthy" {
                let duration = s.groups.get(&c.group).and_then(sticky::slow_start);
                let others = s.health.iter().any(|((g, t), o)| {
                    g == &c.group
                        && t != &c.target
                        && o.state == "healthy"
                        && s.slow
                            .get(&(g.clone(), t.clone()))
                            .is_none_or(|u| *u <= now)
                });
                if let (Some(d), true) = (duration, others) {
                    s.slow.insert(key.clone(), now + d);
                }
            } else {
                s.slow.remove(&key);
            }
            if now_state == "unhealthy" {
                s.cut_unhealthy(&c.group, &c.target);
            }
            s.slow.retain(|_, until| *until > now);
            tracing::info!(group = %c.group, target = %c.target.id, port = c.target.port, from = was, to = now_state, "target health changed");
        }
        // A new state, or the same for another reason (initial checking, unhealthy for
        // another cause): published and recorded.
        if (was, was_reason) != (now_state, now_reason) {
            drop(s);
            // Recorded as it happens: the history's task may run only after the next.
            self.record_history();
            self.health_generation.send_modify(|g| *g += 1);
        }
    }

    /// Follows the targets' health changes (a new value on each).
    pub fn health_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.health_generation.subscribe()
    }

    /// The health of every registered target of every group in use, and the deregistered
    /// targets still draining (what the serve that runs the checks publishes).
    pub fn published_health(&self) -> Vec<PublishedHealth> {
        let s = self.lock();
        let now = Instant::now();
        let mut out: Vec<PublishedHealth> = s
            .health
            .iter()
            .map(|((group, target), h)| PublishedHealth {
                group: group.clone(),
                target: target.clone(),
                state: h.state.to_string(),
                reason: h.reason.map(str::to_string),
                description: h.description.clone(),
                draining_for_ms: None,
            })
            .collect();
        for d in s.draining.iter().filter(|d| d.until > now) {
            let h = Health::draining();
            out.push(PublishedHealth {
                group: d.group.clone(),
                target: d.target.clone(),
                state: h.state.to_string(),
                reason: h.reason.map(str::to_string),
                description: h.description,
                draining_for_ms: Some((d.until - now).as_millis().max(1) as u64),
            });
        }
        out.sort_by(|a, b| {
            (&a.group, &a.target.id, a.target.port).cmp(&(&b.group, &b.target.id, b.target.port))
        });
        out
    }

    /// Takes the health the serve that runs the checks published (for targets still
    /// registered here; the others keep theirs), and its draining targets (those not
    /// registered here again).
    pub fn take_health(&self, rows: &[PublishedHealth]) {
        let mut s = self.lock();
        let now = Instant::now();
        for r in rows {
            if let Some(ms) = r.draining_for_ms {
                let registered = s
                    .groups
                    .get(&r.group)
                    .is_some_and(|g| g.targets.iter().any(|t| ops::same(t, &r.target)));
                if !registered && s.groups.contains_key(&r.group) {
                    s.stop_draining(&r.group, &r.target);
                    s.draining.push(Draining {
                        group: r.group.clone(),
                        target: r.target.clone(),
                        until: now + std::time::Duration::from_millis(ms),
                        load: None,
                    });
                }
                continue;
            }
            let key = (r.group.clone(), r.target.clone());
            let was = s.health.get(&key).map(|h| h.state);
            if was.is_some_and(|w| w != "unhealthy") && r.state == "unhealthy" {
                s.cut_unhealthy(&r.group, &r.target);
            }
            if let Some(h) = s.health.get_mut(&key) {
                h.state = interned(&r.state);
                h.reason = r.reason.as_deref().map(interned);
                h.description = r.description.clone();
            }
        }
    }
}

/// What ECS's service scheduler asks of the load balancers (`crate::scheduler`): targets
/// registered and deregistered through the same operations as the API's, and their health.
impl Elb {
    /// Registers target `id:port` (an IP address or an instance id, as the group's type
    /// asks) in `group`; true when it was not registered before.
    pub fn register_target(&self, group: &str, id: &str, port: u16) -> ElbResult<bool> {
        let known = self
            .lock()
            .groups
            .get(group)
            .is_some_and(|g| g.targets.iter().any(|t| t.id == id && t.port == port));
        let port = port.to_string();
        ops::call(
            self,
            "RegisterTargets",
            &query::Params::of(&[
                ("TargetGroupArn", group),
                ("Targets.member.1.Id", id),
                ("Targets.member.1.Port", &port),
            ]),
        )?;
        Ok(!known)
    }

    /// Deregisters target `id:port` from `group`: how long it drains (zero when the group
    /// is not in use), or None when it was not registered.
    pub fn deregister_target(
        &self,
        group: &str,
        id: &str,
        port: u16,
    ) -> ElbResult<Option<std::time::Duration>> {
        let delay = {
            let s = self.lock();
            let Some(g) = s.groups.get(group) else {
                return Ok(None);
            };
            if !g.targets.iter().any(|t| t.id == id && t.port == port) {
                return Ok(None);
            }
            if s.lbs_of_group(group).is_empty() {
                0
            } else {
                g.attributes
                    .get("deregistration_delay.timeout_seconds")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(300)
            }
        };
        let port = port.to_string();
        ops::call(
            self,
            "DeregisterTargets",
            &query::Params::of(&[
                ("TargetGroupArn", group),
                ("Targets.member.1.Id", id),
                ("Targets.member.1.Port", &port),
            ]),
        )?;
        Ok(Some(std::time::Duration::from_secs(delay)))
    }

    /// The health of registered target `id:port` of `group` (None: not registered).
    pub fn health_of_target(&self, group: &str, id: &str, port: u16) -> Option<Health> {
        let s = self.lock();
        let g = s.groups.get(group)?;
        let t = g.targets.iter().find(|t| t.id == id && t.port == port)?;
        Some(s.health_of(g, t, Instant::now()))
    }
}

#[cfg(test)]
mod tests;
