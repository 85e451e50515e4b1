//! The load balancers as a listener needs them, in one value (docs/load-balancing.md
//! "Cluster mode"): the cluster's leader publishes it ([`Config`], `Elb::config`) and each
//! box's data plane runs the same listeners from it (`Elb::from_config`,
//! `Elb::apply_config`), with the health the leader publishes (`Elb::take_health`).

use super::model::{Listener, LoadBalancer, Rule, TargetGroup};
use super::{Elb, State};
use std::collections::BTreeMap;

/// The format of [`Config`] this build writes and reads; a box refuses another.
pub const FORMAT: u32 = 1;

/// What a listener forwards by: the load balancers (address, scheme, type, attributes),
/// their listeners and rules with their actions, the target groups with their attributes
/// and registrations, the boxes' addresses by EC2 instance id (`instance` targets), and
/// the sticky sessions' cookie key (every box must open the cookies another box set).
/// Tags are left out: nothing routes by them.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Config {
    pub format: u32,
    pub load_balancers: Vec<LoadBalancer>,
    pub listeners: Vec<Listener>,
    pub rules: Vec<Rule>,
    pub target_groups: Vec<TargetGroup>,
    pub instances: BTreeMap<String, std::net::IpAddr>,
    /// `super::sticky::Key`, as hex (empty: none published yet; the box keeps its own).
    pub sticky_key: String,
}

/// Why a box cannot route by a published [`Config`].
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "the load balancers' configuration is in format {found}, this build reads format \
         {FORMAT}: upgrade this box's minifargate to the control plane's version"
    )]
    Format { found: u32 },
    #[error(
        "the load balancers' configuration has a sticky cookie key that is not 32 bytes of hex"
    )]
    StickyKey,
}

impl Elb {
    /// The load balancers as a listener needs them (what the leader publishes).
    pub fn config(&self) -> Config {
        let s = self.read();
        let mut c = Config {
            format: FORMAT,
            load_balancers: s.lbs.values().cloned().collect(),
            listeners: s.listeners.values().cloned().collect(),
            rules: s.rules.values().cloned().collect(),
            target_groups: s.groups.values().cloned().collect(),
            instances: s.instances.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            sticky_key: s.key.to_hex(),
        };
        c.load_balancers.iter_mut().for_each(|lb| lb.tags.clear());
        c.listeners.iter_mut().for_each(|l| l.tags.clear());
        c.target_groups.iter_mut().for_each(|g| g.tags.clear());
        c
    }

    /// The leader: takes the cookie key the cluster's load balancers already use (the
    /// one the last leader published), so that a cookie set before it led still opens.
    pub fn adopt_sticky_key(&self, hex: &str) -> Result<(), SnapshotError> {
        let key = super::sticky::Key::from_hex(hex).ok_or(SnapshotError::StickyKey)?;
        self.lock().key = key;
        Ok(())
    }

    /// A box's load balancers: no store, no API, no health checks; they route by what
    /// [`Self::apply_config`] and [`Self::take_health`] give them.
    pub fn from_config() -> Elb {
        Elb {
            root: std::path::PathBuf::new(),
            aws: crate::taskdef::AwsContext::from_env(),
            state: std::sync::RwLock::new(State::default()),
            generation: tokio::sync::watch::Sender::new(0),
            active: std::sync::atomic::AtomicBool::new(true),
            follows: std::sync::atomic::AtomicBool::new(false),
            health_generation: tokio::sync::watch::Sender::new(0),
            history: std::sync::Mutex::new(super::history::History::default()),
            history_writer: super::history::Writer::default(),
        }
    }

    /// Routes by `c` from now on: a target gone from its group drains for its group's
    /// deregistration delay (as a target deregistered through another serve does,
    /// `State::follow_registrations`); a new one is `initial` until the published health
    /// says otherwise. Tells the listeners.
    pub fn apply_config(&self, c: &Config) -> Result<(), SnapshotError> {
        if c.format != FORMAT {
            return Err(SnapshotError::Format { found: c.format });
        }
        let key = match c.sticky_key.as_str() {
            "" => None,
            k => Some(super::sticky::Key::from_hex(k).ok_or(SnapshotError::StickyKey)?),
        };
        {
            let mut s = self.lock();
            let before = s.registrations();
            s.lbs = by_arn(&c.load_balancers, |x| &x.arn);
            s.listeners = by_arn(&c.listeners, |x| &x.arn);
            s.rules = by_arn(&c.rules, |x| &x.arn);
            s.groups = by_arn(&c.target_groups, |x| &x.arn);
            s.instances = c.instances.iter().map(|(k, v)| (k.clone(), *v)).collect();
            if let Some(key) = key {
                s.key = key;
            }
            s.follow_registrations(before);
            s.refresh_health();
        }
        self.changed();
        Ok(())
    }
}

/// `items` by their ARN.
fn by_arn<T: Clone>(items: &[T], arn: impl Fn(&T) -> &String) -> BTreeMap<String, T> {
    items.iter().map(|x| (arn(x).clone(), x.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{call, group_in_use};
    use super::super::{Pick, meters, rules};
    use super::*;

    /// Where a request to `listener` of `elb` goes (its target's address).
    fn routed(elb: &Elb, listener: &str) -> Option<std::net::SocketAddr> {
        let req = rules::Request {
            method: "GET",
            host: Some("box"),
            path: "/",
            query: None,
            headers: &[],
            source: std::net::Ipv4Addr::LOCALHOST.into(),
        };
        let mut meter = meters::Meter::default();
        match elb.route(listener, Some(&req), req.source, &mut meter) {
            Pick::Target(addr, ..) => Some(addr),
            _ => None,
        }
    }

    #[test]
    fn a_box_routes_by_the_published_config_and_health_as_the_leader_does() {
        let dir = tempfile::tempdir().unwrap();
        let leader = Elb::open(dir.path().to_path_buf()).unwrap();
        let tg = group_in_use(&leader, "snap");
        leader.register_target(&tg, "10.9.2.1", 80).unwrap();
        leader.register_target(&tg, "10.9.2.2", 80).unwrap();
        let config: Config =
            serde_json::from_slice(&serde_json::to_vec(&leader.config()).unwrap()).unwrap();
        assert_eq!(config.format, FORMAT);

        let boxed = Elb::from_config();
        assert!(boxed.bindings().is_empty(), "nothing before a config");
        boxed.apply_config(&config).unwrap();
        assert_eq!(
            boxed.bindings(),
            leader.bindings(),
            "the same listeners, same addresses"
        );
        assert_eq!(boxed.names(), leader.names());
        let listener = boxed.bindings()[0].listener.clone();

        // The leader's checks: .1 unhealthy, .2 healthy; the box sends every request to .2.
        for c in leader.checks() {
            for _ in 0..c.settings.unhealthy.max(c.settings.healthy) {
                let outcome = if c.target.id == "10.9.2.1" {
                    Err(("Target.Timeout", "timed out".to_string()))
                } else {
                    Ok(())
                };
                leader.report(&c, outcome);
            }
        }
        boxed.take_health(&leader.published_health());
        for _ in 0..4 {
            assert_eq!(
                routed(&boxed, &listener),
                Some("10.9.2.2:80".parse().unwrap())
            );
        }

        // A cookie the leader's key sealed opens on the box: one key for the cluster.
        let sealed = leader.read().key.seal("scope", "10.9.2.2:80");
        assert_eq!(
            boxed.read().key.open("scope", &sealed).as_deref(),
            Some("10.9.2.2:80")
        );

        // Deregistered at the leader: it drains on the box too, for the group's delay.
        leader.deregister_target(&tg, "10.9.2.2", 80).unwrap();
        boxed.apply_config(&leader.config()).unwrap();
        let draining: Vec<String> = boxed
            .published_health()
            .into_iter()
            .filter(|r| r.draining_for_ms.is_some_and(|ms| ms > 25_000))
            .map(|r| r.target.id)
            .collect();
        assert_eq!(draining, ["10.9.2.2"]);

        // A load balancer deleted: its listener goes from the box.
        let lb = leader.config().load_balancers[0].arn.clone();
        let l = leader.config().listeners[0].arn.clone();
        call(&leader, "DeleteListener", &[("ListenerArn", &l)]);
        call(&leader, "DeleteLoadBalancer", &[("LoadBalancerArn", &lb)]);
        boxed.apply_config(&leader.config()).unwrap();
        assert!(boxed.bindings().is_empty());
        assert!(boxed.names().is_empty());
    }

    #[test]
    fn a_config_of_another_format_or_with_a_bad_key_is_refused_and_changes_nothing() {
        let boxed = Elb::from_config();
        let newer = Config {
            format: FORMAT + 1,
            ..Config::default()
        };
        let e = boxed.apply_config(&newer).unwrap_err().to_string();
        assert!(e.contains("upgrade this box"), "{e}");
        let bad = Config {
            format: FORMAT,
            sticky_key: "abcd".into(),
            ..Config::default()
        };
        assert!(matches!(
            boxed.apply_config(&bad),
            Err(SnapshotError::StickyKey)
        ));
        let leader = Elb::from_config();
        let key = leader.config().sticky_key;
        boxed.adopt_sticky_key(&key).unwrap();
        assert_eq!(boxed.config().sticky_key, key);
        assert!(boxed.adopt_sticky_key("zz").is_err());
    }
}
