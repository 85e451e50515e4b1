//! Elastic Load Balancing v2 (application and network load balancers): the API's core
//! (load balancers, target groups, listeners, targets and their health: `ops`), the
//! resources (`model`), awsQuery's encoding (`query`) and ELB's errors (`error`).
//! `serve` holds one [`Elb`]; every change is written through to the store
//! (`elb_resources`), so a restarted `serve` has the same resources. docs/load-balancing.md
//! says what is served and what is not.

pub mod error;
pub mod model;
pub mod ops;
pub mod query;

pub use error::{ElbError, ElbResult};
use model::{Listener, LoadBalancer, Target, TargetGroup};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

/// The load balancers of one `serve`.
pub struct Elb {
    root: PathBuf,
    aws: crate::taskdef::AwsContext,
    state: Mutex<State>,
}

/// A target's health as the load balancer sees it (API_TargetHealth).
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub state: &'static str,
    pub reason: Option<&'static str>,
    pub description: Option<String>,
}

impl Health {
    pub fn initial() -> Health {
        Health {
            state: "initial",
            reason: Some("Elb.RegistrationInProgress"),
            description: Some("Target registration is in progress".into()),
        }
    }

    fn unused_not_in_use() -> Health {
        Health {
            state: "unused",
            reason: Some("Target.NotInUse"),
            description: Some(
                "Target group is not configured to receive traffic from the load balancer".into(),
            ),
        }
    }

    fn not_registered() -> Health {
        Health {
            state: "unused",
            reason: Some("Target.NotRegistered"),
            description: Some("Target is not registered to the target group".into()),
        }
    }

    fn draining() -> Health {
        Health {
            state: "draining",
            reason: Some("Target.DeregistrationInProgress"),
            description: Some("Target deregistration is in progress".into()),
        }
    }
}

/// A target deregistered from a group in use: it drains until `until`.
#[derive(Debug, Clone)]
pub struct Draining {
    pub group: String,
    pub target: Target,
    pub until: Instant,
}

#[derive(Default)]
struct State {
    lbs: BTreeMap<String, LoadBalancer>,
    groups: BTreeMap<String, TargetGroup>,
    listeners: BTreeMap<String, Listener>,
    /// The health of each registered target of a group in use, by (group, target).
    health: HashMap<(String, Target), Health>,
    draining: Vec<Draining>,
    store: Option<crate::store::Store>,
}

impl Elb {
    /// The load balancers stored under `root` (none the first time).
    pub fn open(root: PathBuf) -> anyhow::Result<Elb> {
        use anyhow::Context;
        let store = crate::store::Store::open(&root)?;
        let mut state = State::default();
        for (kind, arn, doc) in store.elb_resources()? {
            let msg = format!("stored ELB {kind} {arn} does not decode");
            let bad = || msg.clone();
            match kind.as_str() {
                "loadbalancer" => {
                    state
                        .lbs
                        .insert(arn, serde_json::from_str(&doc).with_context(bad)?);
                }
                "targetgroup" => {
                    state
                        .groups
                        .insert(arn, serde_json::from_str(&doc).with_context(bad)?);
                }
                "listener" => {
                    state
                        .listeners
                        .insert(arn, serde_json::from_str(&doc).with_context(bad)?);
                }
                _ => anyhow::bail!("stored ELB resource {arn} is of unknown kind {kind}"),
            }
        }
        state.store = Some(store);
        let elb = Elb {
            root,
            aws: crate::taskdef::AwsContext::from_env(),
            state: Mutex::new(state),
        };
        elb.with(|s| {
            s.refresh_health();
            Ok(())
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(elb)
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> ElbResult<T>) -> ElbResult<T> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.store.is_none() {
            s.store = Some(crate::store::Store::open(&self.root)?);
        }
        f(&mut s)
    }
}

impl State {
    fn store(&self) -> &crate::store::Store {
        self.store.as_ref().expect("the ELB state holds its store")
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

    fn put(&self, kind: &str, arn: &str, v: &impl serde::Serialize) -> ElbResult<()> {
        let doc = serde_json::to_string(v)
            .map_err(|e| ElbError::Internal(format!("failed to encode {arn}: {e}")))?;
        Ok(self.store().put_elb_resource(kind, arn, &doc)?)
    }

    fn delete(&self, arn: &str) -> ElbResult<()> {
        Ok(self.store().delete_elb_resource(arn)?)
    }

    /// The load balancers whose listeners forward to group `arn`.
    fn lbs_of_group(&self, arn: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .listeners
            .values()
            .filter(|l| l.default_actions.iter().any(|a| a.groups().contains(&arn)))
            .map(|l| l.load_balancer_arn.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Brings the health table in line with the registrations: a target of a group in
    /// use starts `initial`; a group no listener uses has no health (its targets are
    /// `unused`, Target.NotInUse); targets no longer registered are forgotten.
    fn refresh_health(&mut self) {
        let mut keep = HashMap::new();
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
