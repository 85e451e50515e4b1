//! A box's data plane (docs/cluster.md "The data plane outlives the agent"): what its
//! tasks use of the cluster while they run — the DNS server on the task bridge (Cloud
//! Map and load balancers' names), Service Connect's listeners, the route to the load
//! balancers — lives in a small process of its own (`minifargate data-plane`, started by
//! the agent, detached), as the ECS agent's Service Connect relay and containerd's shims
//! outlive their agent. A restarted or upgraded agent adopts the one that runs; it
//! stops only with the instance (deregistered) or `agent --leave`. The routes to the
//! other boxes are kernel state the agent reconciles (`super::subnets`): left in place
//! when it stops, synced again when it starts.
//!
//! Files under `<run root>/agent/`: `agent.lock` (held by the running agent),
//! `data-plane.spec` (what the agent wants served), `data-plane.lock` (held by the data
//! plane for its life, holding its pid, version and the spec it serves).

use anyhow::Context as _;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a data plane serves: the cluster's names come from etcd at `endpoints`, the
/// DNS server and listeners sit on the gateway of task subnet `subnet`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Spec {
    pub endpoints: String,
    pub tls: super::etcd::Tls,
    pub subnet: String,
}

/// What a running data plane says of itself (its lock file's content).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Running {
    pub pid: i32,
    pub version: String,
    pub spec: Spec,
}

/// How long a data plane is given to start, or to stop after SIGTERM.
const WAIT: Duration = Duration::from_secs(10);

fn dir(run_root: &Path) -> PathBuf {
    run_root.join("agent")
}

fn open_lock(path: &Path) -> anyhow::Result<File> {
    let parent = path.parent().expect("a parent");
    std::fs::create_dir_all(parent)
        .with_context(|| format!("failed to create {}", parent.display()))?;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("failed to open {}", path.display()))
}

/// The agent's lock on its run root, held for its life: a second agent on the same box
/// is refused, and `agent --leave` knows none runs.
pub fn hold_agent_lock(run_root: &Path) -> anyhow::Result<Flock<File>> {
    let path = dir(run_root).join("agent.lock");
    let f = open_lock(&path)?;
    let mut held = Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        anyhow::anyhow!(
            "an agent runs already on this box ({} is locked: {e}): stop it first, or give \
             this one another --run-root",
            path.display()
        )
    })?;
    held.set_len(0)?;
    write!(held, "{}", std::process::id())?;
    Ok(held)
}

/// Whether an agent holds `run_root`'s agent lock.
fn agent_runs(run_root: &Path) -> bool {
    let Ok(f) = File::open(dir(run_root).join("agent.lock")) else {
        return false;
    };
    Flock::lock(f, FlockArg::LockSharedNonblock).is_err()
}

/// The data plane running for `run_root`, if one holds its lock (`Some(None)`: one holds
/// it and has not said what it serves yet).
fn running(run_root: &Path) -> Option<Option<Running>> {
    let path = dir(run_root).join("data-plane.lock");
    let mut f = File::open(path).ok()?;
    let mut text = String::new();
    let _ = f.read_to_string(&mut text);
    match Flock::lock(f, FlockArg::LockSharedNonblock) {
        Ok(_free) => None,
        Err(_) => Some(serde_json::from_str(&text).ok()),
    }
}

/// The agent: makes sure a data plane serves `spec` for `ecs`'s run root. One that runs
/// serving it is adopted (also one of another version: an upgraded agent keeps the data
/// plane its tasks use); one serving something else is replaced.
pub fn ensure(ecs: &crate::ecs::Ecs, spec: &Spec) -> anyhow::Result<()> {
    let run_root = &ecs.run_root;
    match settled(run_root) {
        Some(r) if r.spec == *spec => {
            tracing::info!(pid = r.pid, version = %r.version,
                agent_version = crate::ecs::container_instances::AGENT_VERSION,
                subnet = %spec.subnet,
                "adopted the box's data plane (tasks' DNS server, Service Connect listeners)");
            return Ok(());
        }
        Some(r) => {
            tracing::warn!(pid = r.pid, serving = %r.spec.subnet, wanted = %spec.subnet,
                "the box's data plane serves another subnet or etcd: replacing it");
            stop(run_root);
        }
        None => {}
    }
    let spec_file = dir(run_root).join("data-plane.spec");
    std::fs::create_dir_all(dir(run_root))?;
    // Root's only: it names the box's etcd credentials.
    std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true),
        0o600,
    )
    .open(&spec_file)
    .and_then(|mut f| f.write_all(&serde_json::to_vec(spec).expect("a spec encodes")))
    .with_context(|| format!("failed to write {}", spec_file.display()))?;
    let exe = std::env::current_exe().context("failed to find this binary")?;
    let mut c = std::process::Command::new(&exe);
    c.arg("--root")
        .arg(&ecs.root)
        .arg("--run-root")
        .arg(run_root)
        .arg("--log-level")
        .arg(&ecs.log_level);
    if let Some(cfg) = &ecs.config {
        c.arg("--config").arg(cfg);
    }
    c.arg("data-plane").stdin(std::process::Stdio::null());
    let mut child = c
        .spawn()
        .with_context(|| format!("failed to start {} data-plane", exe.display()))?;
    let pid = child.id() as i32;
    let start = Instant::now();
    loop {
        if let Some(Some(r)) = running(run_root)
            && r.pid == pid
        {
            break;
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the data plane exited at its start ({status}): see its lines above");
        }
        anyhow::ensure!(
            start.elapsed() < WAIT,
            "the data plane (pid {pid}) did not start serving within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Reaped when it ends while this agent runs (after, init or the subreaper does).
    std::thread::spawn(move || child.wait());
    tracing::info!(pid, subnet = %spec.subnet, "started the box's data plane (tasks' DNS server, Service Connect listeners)");
    Ok(())
}

/// The running data plane, once it has said what it serves (a moment after its start).
fn settled(run_root: &Path) -> Option<Running> {
    let start = Instant::now();
    loop {
        match running(run_root) {
            None => return None,
            Some(Some(r)) => return Some(r),
            Some(None) if start.elapsed() > WAIT => return None,
            Some(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Stops the running data plane: SIGTERM (it takes its DNS server, listeners and route
/// down), SIGKILL if it has not gone within [`WAIT`]. Whether one ran.
fn stop(run_root: &Path) -> bool {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let Some(r) = settled(run_root) else {
        return false;
    };
    let pid = Pid::from_raw(r.pid);
    let _ = kill(pid, Signal::SIGTERM);
    let start = Instant::now();
    while running(run_root).is_some() {
        if start.elapsed() > WAIT {
            tracing::warn!(
                pid = r.pid,
                "the data plane did not stop within {WAIT:?}: killing it"
            );
            let _ = kill(pid, Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The box leaves for good (its instance deregistered): the data plane stops and the
/// routes to the other boxes go.
pub fn remove(run_root: &Path) {
    if stop(run_root) {
        tracing::info!("stopped the box's data plane");
    }
    super::subnets::remove_routes();
}

/// `agent --leave` (and `system reset`): what a stopped agent left for its tasks goes
/// (the box leaves the cluster for good, or its tasks are gone). Refused while an agent
/// runs (deregister its instance instead: it then removes all of it itself). Whether a
/// data plane ran; nothing is done on a run root no agent ever used.
pub fn leave(run_root: &Path) -> anyhow::Result<bool> {
    if !dir(run_root).is_dir() {
        return Ok(false);
    }
    anyhow::ensure!(
        !agent_runs(run_root),
        "an agent runs on this box: stop it first (SIGTERM), or deregister its container \
         instance (it then stops its tasks and removes its data plane itself)"
    );
    let stopped = stop(run_root);
    if stopped {
        tracing::info!("stopped the box's data plane");
    }
    super::subnets::remove_routes();
    let _ = std::fs::remove_file(dir(run_root).join("data-plane.spec"));
    Ok(stopped)
}

/// The data plane's process (`minifargate data-plane`): serves the spec the agent wrote
/// until SIGTERM or SIGINT, then takes down what it made.
pub fn run(run_root: &Path) -> anyhow::Result<()> {
    // Its own session: a terminal's Ctrl-C or hangup aimed at the agent never reaches it.
    let _ = nix::unistd::setsid();
    let path = dir(run_root).join("data-plane.lock");
    let f = open_lock(&path)?;
    let Ok(mut held) = Flock::lock(f, FlockArg::LockExclusiveNonblock) else {
        tracing::info!("a data plane runs already for this box: leaving it serve");
        return Ok(());
    };
    let spec_file = dir(run_root).join("data-plane.spec");
    let spec: Spec = serde_json::from_slice(
        &std::fs::read(&spec_file)
            .with_context(|| format!("failed to read {}", spec_file.display()))?,
    )
    .with_context(|| format!("{} does not decode", spec_file.display()))?;
    let subnet: netns::Subnet = spec
        .subnet
        .parse()
        .with_context(|| format!("{}: subnet {:?}", spec_file.display(), spec.subnet))?;
    let etcd = super::etcd::Etcd::new(&spec.endpoints, &spec.tls)?;
    let me = Running {
        pid: std::process::id() as i32,
        version: crate::ecs::container_instances::AGENT_VERSION.to_string(),
        spec,
    };
    held.set_len(0)?;
    held.rewind()?;
    held.write_all(&serde_json::to_vec(&me)?)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        tracing::info!(pid = me.pid, subnet = %subnet, "data plane serving the box's tasks");
        tokio::select! {
            () = super::names::serve_tasks(etcd, run_root.to_path_buf(), subnet) => {}
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        anyhow::Ok(())
    })?;
    // The DNS server, its announcement, the listeners and the hosts file's block went
    // with serve_tasks' future; the route to the load balancers goes here.
    if let Err(e) = netns::routes::remove_routes(netns::routes::SERVICE_PROTOCOL) {
        tracing::warn!(error = %crate::errors::error_chain(&e),
            "cannot remove the route to the load balancers");
    }
    tracing::info!("data plane stopped");
    drop(held);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_agent_per_run_root_and_leave_knows_whether_one_runs() {
        let dir = tempfile::tempdir().unwrap();
        let run_root = dir.path();
        assert!(!agent_runs(run_root), "no lock file yet");
        let held = hold_agent_lock(run_root).unwrap();
        assert!(agent_runs(run_root));
        let second = hold_agent_lock(run_root).unwrap_err().to_string();
        assert!(second.contains("an agent runs already"), "{second}");
        let refused = leave(run_root).unwrap_err().to_string();
        assert!(refused.contains("stop it first"), "{refused}");
        drop(held);
        assert!(!agent_runs(run_root));
        assert!(hold_agent_lock(run_root).is_ok());
    }

    #[test]
    fn a_data_plane_is_running_while_its_lock_is_held_and_says_what_it_serves() {
        let dir = tempfile::tempdir().unwrap();
        let run_root = dir.path();
        assert_eq!(running(run_root), None, "no lock file");
        let f = open_lock(&dir.path().join("agent").join("data-plane.lock")).unwrap();
        let mut held = Flock::lock(f, FlockArg::LockExclusiveNonblock).unwrap();
        assert_eq!(running(run_root), Some(None), "held, not said yet");
        let me = Running {
            pid: 7,
            version: "0.1.0".into(),
            spec: Spec {
                endpoints: "https://10.0.0.1:2379".into(),
                tls: Default::default(),
                subnet: "10.94.3.0/24".into(),
            },
        };
        held.write_all(&serde_json::to_vec(&me).unwrap()).unwrap();
        assert_eq!(running(run_root), Some(Some(me.clone())));
        assert_eq!(settled(run_root), Some(me));
        drop(held);
        assert_eq!(running(run_root), None, "its lock released: it is gone");
        assert_eq!(settled(run_root), None);
    }
}
