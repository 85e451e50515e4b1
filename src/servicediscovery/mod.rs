//! AWS Cloud Map (`servicediscovery`, AWS JSON 1.1): namespaces (private DNS and HTTP),
//! services, instances and their custom health (`ops`, the API's core; `model`, the
//! resources; `error`, Cloud Map's exceptions), the names of the DNS namespaces served by
//! the tasks' DNS server (`names`, over `crate::dns`), and ECS services'
//! `serviceRegistries` (`ecs`: each task an instance). `serve` holds one [`CloudMap`];
//! every change is written through to the store (`servicediscovery_resources`), so a
//! restarted `serve` has the same resources. docs/service-discovery.md says what is served.

pub mod connect;
pub mod ecs;
pub mod error;
pub mod model;
pub mod names;
pub mod ops;

pub use error::{SdError, SdResult};
use model::{Instance, Namespace, Operation, Service};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The Cloud Map resources of one `serve`.
pub struct CloudMap {
    root: PathBuf,
    aws: crate::taskdef::AwsContext,
    state: Mutex<State>,
    /// The tasks' DNS server's table, when it runs: the DNS namespaces' names go there.
    records: Mutex<Option<Arc<crate::dns::Records>>>,
    /// Whether the resources follow the store's changes by other connections (cluster
    /// mode).
    follows: AtomicBool,
    /// Bumped each time the names may have changed ([`Self::changes`]).
    generation: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    namespaces: BTreeMap<String, Namespace>,
    services: BTreeMap<String, Service>,
    /// By (service id, instance id).
    instances: BTreeMap<(String, String), Instance>,
    operations: BTreeMap<String, Operation>,
    /// Counts each service's instance changes (DiscoverInstances' `InstancesRevision`).
    revisions: BTreeMap<String, i64>,
    store: Option<crate::store::Store>,
    /// The store's `data_version` when the resources were read.
    seen: i64,
}

impl CloudMap {
    /// The resources stored under `root` (none the first time).
    pub fn open(root: PathBuf) -> anyhow::Result<CloudMap> {
        let store = crate::store::Store::open(&root)?;
        let mut state = State::default();
        state.load(&store)?;
        state.seen = store.data_version().unwrap_or(-1);
        state.store = Some(store);
        Ok(CloudMap {
            root,
            aws: crate::taskdef::AwsContext::from_env(),
            state: Mutex::new(state),
            records: Mutex::new(None),
            follows: AtomicBool::new(false),
            generation: tokio::sync::watch::Sender::new(0),
        })
    }

    /// `serve --cluster`: the resources are the cluster's (rows other serves write into
    /// this serve's store, `crate::cluster::replica`): they are read again whenever the
    /// store changed under them.
    pub fn follow_store(&self) {
        self.follows.store(true, Ordering::SeqCst);
    }

    /// With [`Self::follow_store`]: reads the resources again if another connection
    /// changed the store since.
    pub fn sync(&self) -> SdResult<()> {
        self.with(|_| Ok(()))
    }

    /// Counts the changes of the DNS names (a new value each time they may have changed:
    /// an operation that changes them, the resources read again).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The DNS namespaces' names, as the tasks' DNS server answers them.
    pub fn dns_source(&self) -> crate::dns::Source {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        names::source(&s.namespaces, &s.services, &s.instances)
    }

    /// From now on the DNS namespaces' names are in `records` (the tasks' DNS server's).
    pub fn serve_names(&self, records: Arc<crate::dns::Records>) {
        *self.records.lock().unwrap_or_else(|p| p.into_inner()) = Some(records);
        self.publish();
    }

    /// Writes the DNS namespaces' names to the DNS server's table.
    fn publish(&self) {
        self.generation.send_modify(|g| *g += 1);
        let Some(records) = self
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return;
        };
        let source = {
            let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            names::source(&s.namespaces, &s.services, &s.instances)
        };
        records.replace_source("cloudmap", source);
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> SdResult<T>) -> SdResult<T> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.store.is_none() {
            s.store = Some(crate::store::Store::open(&self.root)?);
        }
        if self.follows.load(Ordering::SeqCst) {
            let now = s.store().data_version().unwrap_or(-1);
            if now != s.seen {
                let store = s.store.take().expect("the Cloud Map state holds its store");
                let loaded = s.load(&store);
                s.store = Some(store);
                loaded.map_err(|e| SdError::Internal(format!("{e:#}")))?;
                s.seen = now;
                drop(s);
                self.publish();
                s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            }
        }
        f(&mut s)
    }

    fn account(&self) -> &str {
        &self.aws.account_id
    }
}

impl State {
    /// Replaces the resources with those stored in `store`.
    fn load(&mut self, store: &crate::store::Store) -> anyhow::Result<()> {
        use anyhow::Context;
        self.namespaces.clear();
        self.services.clear();
        self.instances.clear();
        self.operations.clear();
        for (kind, id, doc) in store.servicediscovery_resources()? {
            let msg = format!("stored Cloud Map {kind} {id} does not decode");
            let bad = || msg.clone();
            match kind.as_str() {
                "namespace" => {
                    self.namespaces
                        .insert(id, serde_json::from_str(&doc).with_context(bad)?);
                }
                "service" => {
                    self.services
                        .insert(id, serde_json::from_str(&doc).with_context(bad)?);
                }
                "instance" => {
                    let i: Instance = serde_json::from_str(&doc).with_context(bad)?;
                    self.instances
                        .insert((i.service_id.clone(), i.id.clone()), i);
                }
                "operation" => {
                    self.operations
                        .insert(id, serde_json::from_str(&doc).with_context(bad)?);
                }
                _ => anyhow::bail!("stored Cloud Map resource {id} is of unknown kind {kind}"),
            }
        }
        Ok(())
    }

    fn store(&self) -> &crate::store::Store {
        self.store
            .as_ref()
            .expect("the Cloud Map state holds its store")
    }

    fn put<T: serde::Serialize>(&self, kind: &str, id: &str, v: &T) -> SdResult<()> {
        let doc = serde_json::to_string(v).expect("a Cloud Map resource encodes");
        self.store().put_servicediscovery_resource(kind, id, &doc)?;
        Ok(())
    }

    fn save_namespace(&self, n: &Namespace) -> SdResult<()> {
        self.put("namespace", &n.id, n)
    }

    fn save_service(&self, s: &Service) -> SdResult<()> {
        self.put("service", &s.id, s)
    }

    fn save_instance(&self, i: &Instance) -> SdResult<()> {
        self.put("instance", &format!("{}/{}", i.service_id, i.id), i)
    }

    fn save_operation(&self, o: &Operation) -> SdResult<()> {
        self.put("operation", &o.id, o)
    }

    fn delete(&self, id: &str) -> SdResult<()> {
        self.store().delete_servicediscovery_resource(id)?;
        Ok(())
    }

    fn instance_count(&self, service: &str) -> usize {
        self.instances
            .range((service.to_string(), String::new())..)
            .take_while(|((s, _), _)| s == service)
            .count()
    }

    /// The namespace `x` names: by its name, ARN or id (ECS names a Service Connect
    /// namespace by name or ARN).
    fn namespace_named(&self, x: &str) -> Option<&model::Namespace> {
        self.namespaces
            .values()
            .find(|n| n.name == x || n.arn == x || n.id == x)
    }

    fn instances_of<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a Instance> + 'a {
        self.instances
            .range((service.to_string(), String::new())..)
            .take_while(move |((s, _), _)| s == service)
            .map(|(_, i)| i)
    }

    fn service_count(&self, namespace: &str) -> usize {
        self.services
            .values()
            .filter(|s| s.namespace_id == namespace)
            .count()
    }

    fn bump(&mut self, service: &str) {
        *self.revisions.entry(service.to_string()).or_insert(0) += 1;
    }
}

/// Now, in seconds since the epoch (AWS JSON's timestamps).
fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or_default()
}

/// `n` random characters of `alphabet`.
fn random_of(alphabet: &[u8], n: usize) -> String {
    let mut b = vec![0u8; n];
    let _ = getrandom::getrandom(&mut b);
    b.iter()
        .map(|x| alphabet[*x as usize % alphabet.len()] as char)
        .collect()
}

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
