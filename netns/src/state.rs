//! Persisted network state under the run root, one small file per fact, changed only
//! under an exclusive flock (`<run_root>/netns.lock`), so that a task's setup, teardown
//! and reaping touch a fixed number of files whatever the number of tasks:
//!
//! ```text
//! <run_root>/state/records/<task>.json  the task's record (compact JSON), held or releasing
//!                  releasing/<task>     empty: the task's record is releasing
//!                  bridged/<task>       empty: a task that is not releasing holds an address
//!                  ips/<a.b.c.d>        the lease; content: the owning task id
//!                  ports/<tcp|udp>-<n>  a host port reservation; content: the owning task id
//!                  last_ip              the last address handed out
//!                  nft_table            our nftables table was made; content: its ruleset's id
//!                                       (empty: made by an earlier build, ruleset unknown)
//!                  tmp/                 files being written (then renamed into place)
//! ```
//!
//! A record is written *before* anything is created for a task, so a crash at any
//! point leaves a record that the GC pass can follow to remove whatever exists. The
//! index files (`ips`, `ports`, `bridged`) are written before the record and removed
//! after it, so a record's index files always exist; an index file whose owner's record
//! does not claim it (left by a crash in between) counts as free, and the GC removes
//! it. An index file is removed only if it names the task being removed, so a stale
//! record's clean-up never frees another task's lease. Every file with content is
//! written to `tmp/` and renamed into place (no half files).
//!
//! Earlier builds kept the state in one JSON file, `<run_root>/netns.json`, read and
//! rewritten whole by every change (O(tasks) per task start and stop); [`lock`]
//! converts one it finds into this layout, so tasks running across an upgrade keep
//! their leases.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::{NetworkMode, Protocol, valid_task_id};

/// A failed read or write of the state or its lock.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("failed to create run root {path}")]
    CreateRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read network state {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "failed to parse network state {path} (remove it after `minifargate system reset` if it is damaged)"
    )]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "failed to parse network state {path}: {reason} (remove it after `minifargate system reset` if it is damaged)"
    )]
    Damaged { path: PathBuf, reason: String },
    #[error("failed to write network state {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One published port as reserved in the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub protocol: Protocol,
    pub host_port: u16,
    pub container_port: u16,
}

/// Everything created (or about to be created) for one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub mode: NetworkMode,
    pub netns: Option<PathBuf>,
    pub veth: Option<String>,
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub ports: Vec<Reservation>,
    /// Whether port map elements may have been added to our nftables table.
    #[serde(default)]
    pub nft_ports: bool,
    pub files: Option<PathBuf>,
    /// Set (unix ms) once teardown removed everything but the veth, which the kernel
    /// frees with the namespace; the address stays leased until the veth is gone.
    #[serde(default)]
    pub releasing_since_ms: Option<u64>,
}

impl TaskRecord {
    /// Whether this record holds an address and is not releasing (what `bridged/` marks).
    fn bridged(&self) -> bool {
        self.ip.is_some() && self.releasing_since_ms.is_none()
    }
}

/// The state file of earlier builds (`netns.json`), read only to convert it.
#[derive(Deserialize)]
struct Legacy {
    tasks: BTreeMap<String, TaskRecord>,
    #[serde(default)]
    nft_table: bool,
    #[serde(default)]
    last_ip: Option<Ipv4Addr>,
}

const STATE: &str = "state";
const RECORDS: &str = "records";
const RELEASING: &str = "releasing";
const BRIDGED: &str = "bridged";
const IPS: &str = "ips";
const PORTS: &str = "ports";
const TMP: &str = "tmp";
const LAST_IP: &str = "last_ip";
const NFT_TABLE: &str = "nft_table";
const LEGACY: &str = "netns.json";

/// The state held under its exclusive lock; dropping it unlocks.
pub struct Locked {
    _lock: Flock<File>,
    dir: PathBuf,
}

/// Locks the state under `root` (creating `root` and the layout if needed, and
/// converting the `netns.json` of an earlier build).
pub fn lock(root: &Path) -> Result<Locked, StateError> {
    fs::create_dir_all(root).map_err(|source| StateError::CreateRoot {
        path: root.into(),
        source,
    })?;
    let lock_path = root.join("netns.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| StateError::Lock {
            path: lock_path.clone(),
            source,
        })?;
    let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| StateError::Lock {
        path: lock_path.clone(),
        source: e.into(),
    })?;
    let dir = root.join(STATE);
    if !dir.is_dir() {
        make_layout(&dir)?;
    }
    let l = Locked { _lock: lock, dir };
    l.migrate(&root.join(LEGACY))?;
    Ok(l)
}

/// Makes the layout's directories in `<dir>.new` and renames it to `dir`, so `dir`
/// exists only complete (one stat per lock after that).
fn make_layout(dir: &Path) -> Result<(), StateError> {
    let new = dir.with_extension("new");
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StateError::Write { path, source }
    };
    match fs::remove_dir_all(&new) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_err(&new)(e)),
    }
    for sub in [RECORDS, RELEASING, BRIDGED, IPS, PORTS, TMP] {
        let p = new.join(sub);
        fs::create_dir_all(&p).map_err(write_err(&p))?;
    }
    fs::rename(&new, dir).map_err(write_err(dir))
}

fn port_name(protocol: Protocol, port: u16) -> String {
    format!("{protocol}-{port}")
}

fn parse_port_name(name: &str) -> Option<(Protocol, u16)> {
    let (p, n) = name.split_once('-')?;
    let p = match p {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return None,
    };
    Some((p, n.parse().ok()?))
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

impl Locked {
    fn path(&self, sub: &str, name: &str) -> PathBuf {
        self.dir.join(sub).join(name)
    }

    fn record_path(&self, task: &str) -> PathBuf {
        self.path(RECORDS, &format!("{task}.json"))
    }

    /// Writes `body` to `<sub>/<name>` (`sub` empty: the state directory itself) through
    /// a file in `tmp/` and a rename.
    fn write(&self, sub: &str, name: &str, body: &[u8]) -> Result<(), StateError> {
        let path = self.path(sub, name);
        let tmp = match sub {
            "" => self.path(TMP, name),
            _ => self.path(TMP, &format!("{sub}.{name}")),
        };
        fs::write(&tmp, body)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|source| StateError::Write { path, source })
    }

    /// Makes the empty marker `<sub>/<name>`.
    fn touch(&self, sub: &str, name: &str) -> Result<(), StateError> {
        let path = self.path(sub, name);
        File::create(&path)
            .map(drop)
            .map_err(|source| StateError::Write { path, source })
    }

    /// Removes `<sub>/<name>`; a missing file is not an error.
    fn unlink(&self, sub: &str, name: &str) -> Result<(), StateError> {
        let path = self.path(sub, name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(source) => Err(StateError::Write { path, source }),
        }
    }

    /// The names in `<sub>/` (ours are ASCII and never start with '.').
    fn names(&self, sub: &str) -> Result<impl Iterator<Item = String>, StateError> {
        let path = self.dir.join(sub);
        let rd = fs::read_dir(&path).map_err(|source| StateError::Read {
            path: path.clone(),
            source,
        })?;
        Ok(rd.filter_map(|e| {
            // An entry that vanished between getdents and here is no entry.
            let name = e.ok()?.file_name().into_string().ok()?;
            (!name.starts_with('.')).then_some(name)
        }))
    }

    /// Calls `found` with the names in `<sub>/` until it returns true; returns whether
    /// it did. Reads the directory 1 KiB at a time (std's `read_dir` asks for 32 KiB,
    /// ~580 names, on its first call), so stopping at the first name costs the same
    /// with 1000 names as with one.
    fn any_name(
        &self,
        sub: &str,
        mut found: impl FnMut(&str) -> Result<bool, StateError>,
    ) -> Result<bool, StateError> {
        use rustix::fs::{Mode, OFlags, RawDir};
        let path = self.dir.join(sub);
        let read_err = |e: rustix::io::Errno| StateError::Read {
            path: path.clone(),
            source: e.into(),
        };
        let fd = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(read_err)?;
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1024];
        let mut dir = RawDir::new(&fd, &mut buf);
        while let Some(entry) = dir.next() {
            let entry = entry.map_err(read_err)?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if !name.starts_with('.') && found(name)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The task id an index file `<sub>/<name>` names, if the file exists.
    fn owner_named(&self, sub: &str, name: &str) -> Result<Option<String>, StateError> {
        let path = self.path(sub, name);
        match fs::read(&path) {
            Ok(b) => match String::from_utf8(b) {
                Ok(id) if valid_task_id(&id) => Ok(Some(id)),
                _ => Err(StateError::Damaged {
                    path,
                    reason: "expected a task id".into(),
                }),
            },
            Err(e) if not_found(&e) => Ok(None),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    /// Task `task`'s record, if it has one.
    pub fn record(&self, task: &str) -> Result<Option<TaskRecord>, StateError> {
        if !valid_task_id(task) {
            return Ok(None); // no such file can exist
        }
        let path = self.record_path(task);
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|source| StateError::Parse { path, source }),
            Err(e) if not_found(&e) => Ok(None),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    /// The ids of the recorded tasks, (held, releasing), sorted: names only, no record
    /// is read.
    pub fn tasks(&self) -> Result<(Vec<String>, Vec<String>), StateError> {
        let recorded: BTreeSet<String> = self
            .names(RECORDS)?
            .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
            .filter(|id| valid_task_id(id))
            .collect();
        let releasing: BTreeSet<String> = self
            .names(RELEASING)?
            .filter(|id| recorded.contains(id))
            .collect();
        let held = recorded.difference(&releasing).cloned().collect();
        Ok((held, releasing.into_iter().collect()))
    }

    /// The ids with a releasing marker (each may lack its record after a crash).
    pub fn releasing_marked(&self) -> Result<Vec<String>, StateError> {
        Ok(self
            .names(RELEASING)?
            .filter(|id| valid_task_id(id))
            .collect())
    }

    /// Removes the releasing marker of `task` (one without a releasing record).
    pub fn unmark_releasing(&self, task: &str) -> Result<(), StateError> {
        self.unlink(RELEASING, task)
    }

    /// The task holding `ip`: the task the lease file names, if that task's record
    /// claims `ip` (a lease left by a crash counts as free).
    pub fn lease_owner(&self, ip: Ipv4Addr) -> Result<Option<String>, StateError> {
        let Some(owner) = self.owner_named(IPS, &ip.to_string())? else {
            return Ok(None);
        };
        Ok(self
            .record(&owner)?
            .is_some_and(|r| r.ip == Some(ip))
            .then_some(owner))
    }

    /// The task holding host port `port`, like [`Self::lease_owner`].
    pub fn port_owner(&self, protocol: Protocol, port: u16) -> Result<Option<String>, StateError> {
        let Some(owner) = self.owner_named(PORTS, &port_name(protocol, port))? else {
            return Ok(None);
        };
        let claims = |r: TaskRecord| {
            r.ports
                .iter()
                .any(|x| x.protocol == protocol && x.host_port == port)
        };
        Ok(self.record(&owner)?.is_some_and(claims).then_some(owner))
    }

    /// Every leased address, including those of releasing tasks (reads every lease).
    pub fn leased(&self) -> Result<Vec<Ipv4Addr>, StateError> {
        let mut out = Vec::new();
        for name in self.names(IPS)? {
            if let Ok(ip) = name.parse()
                && self.lease_owner(ip)?.is_some()
            {
                out.push(ip);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Whether any address is leased, releasing tasks' included (stops at the first).
    pub fn any_lease(&self) -> Result<bool, StateError> {
        self.any_name(IPS, |name| match name.parse() {
            Ok(ip) => Ok(self.lease_owner(ip)?.is_some()),
            Err(_) => Ok(false),
        })
    }

    /// Whether any task that is not releasing holds an address. Stops at the first;
    /// a marker without such a record (left by a crash) met on the way is removed.
    pub fn any_bridged(&self) -> Result<bool, StateError> {
        self.any_bridged_but("")
    }

    /// [`Self::any_bridged`], not counting task `task`.
    pub fn any_bridged_but(&self, task: &str) -> Result<bool, StateError> {
        self.any_name(BRIDGED, |id| {
            if id == task {
                return Ok(false);
            }
            if self.record(id)?.is_some_and(|r| r.bridged()) {
                return Ok(true);
            }
            self.unlink(BRIDGED, id)?;
            Ok(false)
        })
    }

    /// The last address handed out.
    pub fn last_ip(&self) -> Result<Option<Ipv4Addr>, StateError> {
        let path = self.dir.join(LAST_IP);
        match fs::read(&path) {
            Ok(b) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or(StateError::Damaged {
                    path,
                    reason: "expected an IPv4 address".into(),
                }),
            Err(e) if not_found(&e) => Ok(None),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    pub fn set_last_ip(&self, ip: Ipv4Addr) -> Result<(), StateError> {
        self.write("", LAST_IP, ip.to_string().as_bytes())
    }

    /// The ruleset id our nftables table was made with, if we made it (it stays once made,
    /// until `system reset`; an empty id: made by an earlier build, whose flag was an empty
    /// file). The kernel may have lost it since (a reboot, `nft flush ruleset`): the
    /// wiring checks before it relies on it.
    pub fn nft_table(&self) -> Result<Option<String>, StateError> {
        let path = self.dir.join(NFT_TABLE);
        match fs::read(&path) {
            Ok(b) => String::from_utf8(b)
                .map(Some)
                .map_err(|_| StateError::Damaged {
                    path,
                    reason: "expected a ruleset id".into(),
                }),
            Err(e) if not_found(&e) => Ok(None),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    /// Records our table as made with ruleset `id`, or (`None`) as not there.
    pub fn set_nft_table(&self, id: Option<&str>) -> Result<(), StateError> {
        match id {
            Some(id) => self.write("", NFT_TABLE, id.as_bytes()),
            None => self.unlink("", NFT_TABLE),
        }
    }

    pub fn add(&self, task: &str, rec: &TaskRecord) -> Result<(), StateError> {
        debug_assert!(valid_task_id(task));
        if let Some(ip) = rec.ip {
            self.write(IPS, &ip.to_string(), task.as_bytes())?;
        }
        for p in &rec.ports {
            self.write(PORTS, &port_name(p.protocol, p.host_port), task.as_bytes())?;
        }
        if rec.bridged() {
            self.touch(BRIDGED, task)?;
        }
        if rec.releasing_since_ms.is_some() {
            self.touch(RELEASING, task)?;
        } else {
            self.unlink(RELEASING, task)?;
        }
        self.write_record(task, rec)
    }

    fn write_record(&self, task: &str, rec: &TaskRecord) -> Result<(), StateError> {
        let body = serde_json::to_vec(rec).expect("a record serializes");
        self.write(RECORDS, &format!("{task}.json"), &body)
    }

    /// Turns `task`'s record `rec` into a releasing one, since `now_ms`: only the veth
    /// and the lease are kept. The marker first (a crash before the record is written
    /// leaves a marker that reaping drops), then the record, then the port
    /// reservations and the bridged marker.
    pub fn release(&self, task: &str, rec: &TaskRecord, now_ms: u64) -> Result<(), StateError> {
        self.touch(RELEASING, task)?;
        let released = TaskRecord {
            ports: Vec::new(),
            nft_ports: false,
            netns: None,
            files: None,
            releasing_since_ms: Some(now_ms),
            ..rec.clone()
        };
        self.write_record(task, &released)?;
        self.remove_ports(task, &rec.ports)?;
        self.unlink(BRIDGED, task)
    }

    /// Removes `task`'s record `rec`: the record first, then its markers and the index
    /// files that still name it.
    pub fn remove(&self, task: &str, rec: &TaskRecord) -> Result<(), StateError> {
        if !valid_task_id(task) {
            return Ok(());
        }
        self.unlink(RECORDS, &format!("{task}.json"))?;
        self.unlink(BRIDGED, task)?;
        self.unlink(RELEASING, task)?;
        self.remove_ports(task, &rec.ports)?;
        if let Some(ip) = rec.ip {
            self.remove_owned(IPS, &ip.to_string(), task)?;
        }
        Ok(())
    }

    fn remove_ports(&self, task: &str, ports: &[Reservation]) -> Result<(), StateError> {
        for p in ports {
            self.remove_owned(PORTS, &port_name(p.protocol, p.host_port), task)?;
        }
        Ok(())
    }

    /// Removes the index file `<sub>/<name>` if it names `task`.
    fn remove_owned(&self, sub: &str, name: &str, task: &str) -> Result<(), StateError> {
        if self.owner_named(sub, name)?.as_deref() == Some(task) {
            self.unlink(sub, name)?;
        }
        Ok(())
    }

    /// Removes what a crash may have left between the steps of [`Self::add`],
    /// [`Self::release`] and [`Self::remove`]: index files and markers no record
    /// claims, and files half written in `tmp/`. Reads every index file.
    pub fn sweep(&self) -> Result<(), StateError> {
        for name in self.names(IPS)? {
            let stale = match name.parse() {
                Ok(ip) => self.lease_owner(ip)?.is_none(),
                Err(_) => false, // not ours: left alone
            };
            if stale {
                self.unlink(IPS, &name)?;
            }
        }
        for name in self.names(PORTS)? {
            if let Some((p, port)) = parse_port_name(&name)
                && self.port_owner(p, port)?.is_none()
            {
                self.unlink(PORTS, &name)?;
            }
        }
        for id in self.names(BRIDGED)? {
            if !self.record(&id)?.is_some_and(|r| r.bridged()) {
                self.unlink(BRIDGED, &id)?;
            }
        }
        for id in self.names(RELEASING)? {
            if self
                .record(&id)?
                .is_none_or(|r| r.releasing_since_ms.is_none())
            {
                self.unlink(RELEASING, &id)?;
            }
        }
        for name in self.names(TMP)? {
            self.unlink(TMP, &name)?;
        }
        Ok(())
    }

    /// Converts the single state file of an earlier build at `legacy`, if there is one, into this
    /// layout, then removes it. Idempotent: a crash midway converts it again.
    fn migrate(&self, legacy: &Path) -> Result<(), StateError> {
        let body = match fs::read(legacy) {
            Ok(b) => b,
            Err(e) if not_found(&e) => return Ok(()),
            Err(source) => {
                return Err(StateError::Read {
                    path: legacy.into(),
                    source,
                });
            }
        };
        let old: Legacy = serde_json::from_slice(&body).map_err(|source| StateError::Parse {
            path: legacy.into(),
            source,
        })?;
        for (task, rec) in &old.tasks {
            if !valid_task_id(task) {
                return Err(StateError::Damaged {
                    path: legacy.into(),
                    reason: format!("task id {task:?} is not valid"),
                });
            }
            self.add(task, rec)?;
        }
        if let Some(ip) = old.last_ip {
            self.set_last_ip(ip)?;
        }
        // The single-file state knew only whether the table existed.
        self.set_nft_table(old.nft_table.then_some(""))?;
        fs::remove_file(legacy).map_err(|source| StateError::Write {
            path: legacy.into(),
            source,
        })?;
        info!(tasks = old.tasks.len(), from = %legacy.display(), "converted the network state to one file per task");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ip: Option<[u8; 4]>, ports: &[u16], releasing: Option<u64>) -> TaskRecord {
        TaskRecord {
            mode: NetworkMode::Awsvpc,
            netns: Some("/run/netns/mfg-t".into()),
            veth: Some("mv1".into()),
            ip: ip.map(Ipv4Addr::from),
            ports: ports
                .iter()
                .map(|&p| Reservation {
                    protocol: Protocol::Tcp,
                    host_port: p,
                    container_port: p,
                })
                .collect(),
            nft_ports: !ports.is_empty(),
            files: None,
            releasing_since_ms: releasing,
        }
    }

    const A: [u8; 4] = [10, 94, 0, 2];
    const B: [u8; 4] = [10, 94, 0, 3];

    #[test]
    fn round_trips_under_lock() {
        let dir = tempfile::tempdir().unwrap();
        let r = rec(Some(A), &[80], None);
        {
            let l = lock(dir.path()).unwrap();
            assert_eq!(l.tasks().unwrap(), (vec![], vec![]));
            assert_eq!(l.last_ip().unwrap(), None);
            assert_eq!(l.nft_table().unwrap(), None);
            l.add("t1", &r).unwrap();
            l.set_last_ip(A.into()).unwrap();
            l.set_nft_table(Some("netlink-0123abcd")).unwrap();
        }
        let l = lock(dir.path()).unwrap();
        assert_eq!(l.record("t1").unwrap(), Some(r.clone()));
        assert_eq!(l.record("t2").unwrap(), None);
        assert_eq!(l.tasks().unwrap(), (vec!["t1".to_string()], vec![]));
        assert_eq!(l.leased().unwrap(), vec![Ipv4Addr::from(A)]);
        assert_eq!(l.lease_owner(A.into()).unwrap().as_deref(), Some("t1"));
        assert_eq!(l.lease_owner(B.into()).unwrap(), None);
        assert_eq!(
            l.port_owner(Protocol::Tcp, 80).unwrap().as_deref(),
            Some("t1")
        );
        assert_eq!(l.port_owner(Protocol::Udp, 80).unwrap(), None);
        assert_eq!(l.last_ip().unwrap(), Some(A.into()));
        assert_eq!(l.nft_table().unwrap().as_deref(), Some("netlink-0123abcd"));
        assert!(l.any_bridged().unwrap());
        assert!(!l.any_bridged_but("t1").unwrap());
        assert!(l.any_bridged_but("t2").unwrap());

        // Releasing keeps the lease and drops the ports and the bridged marker.
        l.release("t1", &r, 7).unwrap();
        assert_eq!(l.tasks().unwrap(), (vec![], vec!["t1".to_string()]));
        assert_eq!(l.lease_owner(A.into()).unwrap().as_deref(), Some("t1"));
        assert_eq!(l.port_owner(Protocol::Tcp, 80).unwrap(), None);
        assert!(!dir.path().join("state/ports/tcp-80").exists());
        assert!(!l.any_bridged().unwrap());
        assert!(l.any_lease().unwrap());
        let released = l.record("t1").unwrap().unwrap();
        assert_eq!(released.releasing_since_ms, Some(7));
        assert!(released.ports.is_empty());

        l.remove("t1", &released).unwrap();
        assert_eq!(l.tasks().unwrap(), (vec![], vec![]));
        assert!(!l.any_lease().unwrap());
        for sub in [RECORDS, RELEASING, BRIDGED, IPS, PORTS, TMP] {
            assert_eq!(l.names(sub).unwrap().count(), 0, "{sub}");
        }
    }

    #[test]
    fn damaged_files_are_clear_errors_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let l = lock(dir.path()).unwrap();
        let record = dir.path().join("state/records/t1.json");
        fs::write(&record, "{").unwrap();
        let err = l.record("t1").unwrap_err().to_string();
        assert!(err.contains("failed to parse network state"), "{err}");
        assert!(err.contains(&record.display().to_string()), "{err}");

        let lease = dir.path().join("state/ips/10.94.0.2");
        fs::write(&lease, "").unwrap();
        let err = l.lease_owner(A.into()).unwrap_err().to_string();
        assert!(err.contains(&lease.display().to_string()), "{err}");

        let last = dir.path().join("state/last_ip");
        fs::write(&last, "x").unwrap();
        let err = l.last_ip().unwrap_err().to_string();
        assert!(err.contains(&last.display().to_string()), "{err}");
    }

    #[test]
    fn damaged_legacy_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("netns.json"), "{").unwrap();
        let err = lock(dir.path()).err().unwrap().to_string();
        assert!(err.contains("failed to parse network state"), "{err}");
        assert!(err.contains("netns.json"), "{err}");
    }

    #[test]
    fn migrates_the_single_file_of_earlier_builds() {
        let dir = tempfile::tempdir().unwrap();
        let held = rec(Some(A), &[80, 443], None);
        let going = rec(Some(B), &[], Some(5));
        let old = serde_json::json!({
            "tasks": {"held": held, "going": going},
            "nft_table": true,
            "last_ip": "10.94.0.3",
        });
        fs::write(
            dir.path().join("netns.json"),
            serde_json::to_vec_pretty(&old).unwrap(),
        )
        .unwrap();
        let l = lock(dir.path()).unwrap();
        assert!(!dir.path().join("netns.json").exists());
        assert_eq!(
            l.tasks().unwrap(),
            (vec!["held".to_string()], vec!["going".to_string()])
        );
        assert_eq!(l.record("held").unwrap(), Some(held));
        assert_eq!(l.record("going").unwrap(), Some(going));
        assert_eq!(l.leased().unwrap(), [A, B].map(Ipv4Addr::from));
        for port in [80, 443] {
            assert_eq!(
                l.port_owner(Protocol::Tcp, port).unwrap().as_deref(),
                Some("held")
            );
        }
        assert_eq!(l.releasing_marked().unwrap(), vec!["going".to_string()]);
        assert!(l.any_bridged().unwrap());
        // Made by that build, with a ruleset this one does not know.
        assert_eq!(l.nft_table().unwrap().as_deref(), Some(""));
        assert_eq!(l.last_ip().unwrap(), Some(B.into()));
        drop(l);
        // Nothing to convert the second time.
        let l = lock(dir.path()).unwrap();
        assert_eq!(l.leased().unwrap().len(), 2);
    }

    #[test]
    fn an_index_file_without_its_record_is_free_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let l = lock(dir.path()).unwrap();
        // A crash between the index files and the record of "gone".
        l.write(IPS, "10.94.0.2", b"gone").unwrap();
        l.write(PORTS, "tcp-80", b"gone").unwrap();
        l.touch(BRIDGED, "gone").unwrap();
        l.touch(RELEASING, "gone").unwrap();
        assert_eq!(l.lease_owner(A.into()).unwrap(), None);
        assert_eq!(l.port_owner(Protocol::Tcp, 80).unwrap(), None);
        assert!(l.leased().unwrap().is_empty());
        assert!(!l.any_lease().unwrap());
        assert_eq!(l.tasks().unwrap(), (vec![], vec![]));
        // Another task takes them over.
        let r = rec(Some(A), &[80], None);
        l.add("new", &r).unwrap();
        assert_eq!(l.lease_owner(A.into()).unwrap().as_deref(), Some("new"));
        assert_eq!(
            l.port_owner(Protocol::Tcp, 80).unwrap().as_deref(),
            Some("new")
        );
        // The sweep removes only what no record claims.
        l.write(IPS, "10.94.0.3", b"gone").unwrap();
        l.write(TMP, "records.x.json", b"{").unwrap();
        l.sweep().unwrap();
        let names = |sub| l.names(sub).unwrap().collect::<Vec<_>>();
        assert_eq!(names(IPS), ["10.94.0.2"]);
        assert_eq!(names(PORTS), ["tcp-80"]);
        assert_eq!(names(BRIDGED), ["new"]);
        assert!(names(RELEASING).is_empty());
        assert!(names(TMP).is_empty());
        assert!(l.any_bridged().unwrap());
    }

    #[test]
    fn removing_a_stale_record_keeps_another_tasks_lease_and_ports() {
        let dir = tempfile::tempdir().unwrap();
        let l = lock(dir.path()).unwrap();
        // "old" was recorded with A and port 80; its lease and port were then taken
        // over by "new" (say, "old"'s files were swept as stale after a crash and its
        // record came back from a backup): removing "old" must not free them.
        let old = rec(Some(A), &[80], None);
        l.add("old", &old).unwrap();
        let new = rec(Some(A), &[80], None);
        l.add("new", &new).unwrap();
        l.remove("old", &old).unwrap();
        assert_eq!(l.record("old").unwrap(), None);
        assert_eq!(l.lease_owner(A.into()).unwrap().as_deref(), Some("new"));
        assert_eq!(
            l.port_owner(Protocol::Tcp, 80).unwrap().as_deref(),
            Some("new")
        );
        assert!(l.any_bridged().unwrap());
        // Releasing "old" again (a stale teardown) does not drop "new"'s port either.
        l.release("old", &old, 1).unwrap();
        assert_eq!(
            l.port_owner(Protocol::Tcp, 80).unwrap().as_deref(),
            Some("new")
        );
    }

    #[test]
    fn any_bridged_drops_stale_markers() {
        let dir = tempfile::tempdir().unwrap();
        let l = lock(dir.path()).unwrap();
        l.touch(BRIDGED, "crashed").unwrap();
        l.add("none-mode", &rec(None, &[], None)).unwrap();
        assert!(!l.any_bridged().unwrap());
        assert_eq!(l.names(BRIDGED).unwrap().count(), 0);
        // More stale names than one 1 KiB read holds, and one live task among them.
        for i in 0..200 {
            l.touch(BRIDGED, &format!("crashed-{i:03}-{}", "x".repeat(40)))
                .unwrap();
        }
        l.add("live", &rec(Some(A), &[], None)).unwrap();
        assert!(l.any_bridged().unwrap());
        assert!(l.names(BRIDGED).unwrap().any(|n| n == "live"));
        l.sweep().unwrap();
        assert_eq!(l.names(BRIDGED).unwrap().collect::<Vec<_>>(), ["live"]);
        l.remove("live", &rec(Some(A), &[], None)).unwrap();
        for i in 0..200 {
            l.touch(BRIDGED, &format!("crashed-{i:03}-{}", "x".repeat(40)))
                .unwrap();
        }
        assert!(!l.any_bridged().unwrap());
        assert_eq!(l.names(BRIDGED).unwrap().count(), 0);
    }

    #[test]
    fn a_crash_midway_through_the_layout_is_redone() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("state.new/records")).unwrap();
        let l = lock(dir.path()).unwrap();
        l.add("t", &rec(Some(A), &[], None)).unwrap();
        assert!(!dir.path().join("state.new").exists());
    }
}
