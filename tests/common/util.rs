//! Small helpers shared by the harness: free loopback ports, hashing, waiting for
//! a server, running a command and failing loudly, and directory snapshots.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A loopback port nobody listens on right now (bind :0, read it back, release it).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn sha256_file(path: &Path) -> String {
    let mut f =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    hex::encode(h.finalize())
}

/// Run a command to completion; panic with its output if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Keep any proxy settings of the host away from loopback traffic.
pub fn no_proxy(c: &mut Command) -> &mut Command {
    for k in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        c.env_remove(k);
    }
    c.env("NO_PROXY", "*").env("no_proxy", "*")
}

/// HTTP status of `url` as curl sees it (0 when nothing answers). `-k`: the harness
/// only probes its own servers, whose CA the curl on the host does not know.
pub fn http_status(url: &str) -> u16 {
    let out = no_proxy(&mut Command::new("curl"))
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-m",
            "2",
            "-w",
            "%{http_code}",
            url,
        ])
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Poll until `f` returns Some or the deadline passes.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deterministic, fast, incompressible bytes (xorshift64*), for large layers.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What a tree looks like: relative path → (type, size, mode, nlink, content hash).
pub type Snapshot = BTreeMap<PathBuf, String>;

pub fn snapshot(dir: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn walk(base: &Path, dir: &Path, out: &mut Snapshot) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(base).unwrap().to_path_buf();
        let desc = if md.file_type().is_symlink() {
            format!("link->{}", std::fs::read_link(&p).unwrap().display())
        } else if md.is_dir() {
            format!("dir mode={:o}", md.mode())
        } else if md.is_file() {
            format!(
                "file mode={:o} nlink={} sha={}",
                md.mode(),
                md.nlink(),
                sha256_file(&p)
            )
        } else {
            format!("other mode={:o} rdev={}", md.mode(), md.rdev())
        };
        out.insert(rel, desc);
        if md.is_dir() && !md.file_type().is_symlink() {
            walk(base, &p, out);
        }
    }
}

/// Names directly inside `dir` (empty when it does not exist).
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Total size in bytes of regular files below `dir`.
pub fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        // Files come and go while a pull runs: skip what vanished.
        let Ok(md) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if md.is_dir() {
            total += du(&e.path());
        } else if md.is_file() {
            total += md.len();
        }
    }
    total
}

/// Paths under `dirs` that `nobody` can read (regular files) and that hold one of
/// `values`, found by a walk run as `nobody` (setpriv): what any local user could read
/// of a task. Also returns every file that walk could read at all.
pub fn readable_by_nobody(
    dirs: &[&std::path::Path],
    values: &[&str],
) -> (Vec<String>, Vec<String>) {
    let walk = |tail: &[&str]| {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg("find")
            .args(dirs)
            .args(["-type", "f"])
            .args(tail)
            // What nobody cannot open is what we want: find's complaints are not failures.
            .stderr(std::process::Stdio::null());
        let out = c.output().expect("run setpriv (util-linux)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut grep = vec!["-exec", "grep", "-l", "-s", "-F"];
    for v in values {
        grep.extend(["-e", v]);
    }
    grep.extend(["{}", "+"]);
    let hits = walk(&grep).lines().map(str::to_string).collect();
    let readable = walk(&["-readable"]).lines().map(str::to_string).collect();
    (hits, readable)
}
