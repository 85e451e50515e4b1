//! Giving memory back once a long-lived process has gone idle: the task supervisor runs
//! for as long as its task, but most of what it touched was for setting the task up.
//!
//! - Code and read-only data of the executable that are mapped but clean: their page
//!   table entries are dropped (`MADV_DONTNEED`). The pages stay in the page cache (one
//!   copy for every process running the binary) and fault back in, without I/O while
//!   cached, when next used; mappings with a written page (relocations) are left alone.
//! - The main thread's stack below the current frame (minus a margin): whatever
//!   lies there is dead by the ABI and comes back as zero pages if the stack grows again.
//! - glibc's malloc heaps: `malloc_trim(0)` returns free pages of every arena.
#![allow(unsafe_code)]

use std::os::unix::fs::MetadataExt;

use procfs::process::{MMPermissions, MMapPath, Process};

/// What [`release_idle_memory`] gave back, in bytes of resident memory.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Clean pages of the executable's read-only mappings unmapped from this process.
    pub exe_clean: u64,
    /// Resident pages of the main thread's stack below the live frames.
    pub stack: u64,
    /// Whether glibc released free heap memory to the system.
    pub heap_trimmed: bool,
}

/// Stack kept below the caller's frame: far beyond the 128-byte red zone and any frame
/// a signal handler or the functions called from here need.
const STACK_MARGIN: u64 = 16 << 10;

/// Gives back what an idle process does not need resident (module docs). Call it at a
/// quiet point; the next use of released code or stack costs a minor page fault.
pub fn release_idle_memory() -> std::io::Result<Released> {
    let mut out = Released::default();
    let exe = std::fs::metadata("/proc/self/exe")?;
    let exe_dev = (
        nix::sys::stat::major(exe.dev()),
        nix::sys::stat::minor(exe.dev()),
    );
    let marker = 0u8;
    let frame = std::ptr::addr_of!(marker) as u64;
    let main_thread = nix::unistd::gettid() == nix::unistd::getpid();
    let page = page_size();
    let maps = Process::myself()
        .and_then(|p| p.smaps())
        .map_err(std::io::Error::other)?;
    for m in maps {
        let stat = |k: &str| m.extension.map.get(k).copied().unwrap_or(0);
        let (start, end) = m.address;
        let own_clean_code = matches!(m.pathname, MMapPath::Path(_))
            && m.inode == exe.ino()
            && (m.dev.0 as u64, m.dev.1 as u64) == exe_dev
            && !m.perms.contains(MMPermissions::WRITE)
            && !m.perms.contains(MMPermissions::SHARED)
            // Written pages (relocations) are anonymous copies. (Private_Dirty also
            // counts file pages not yet written back, e.g. of a new build.)
            && stat("Anonymous") == 0
            && stat("Swap") == 0
            && stat("Rss") > 0;
        if own_clean_code {
            // SAFETY: a private, read-only mapping of the executable with no written
            // page: dropping its page table entries loses nothing, as every page reads
            // back from the file with the same contents.
            if unsafe { dontneed(start, end - start) } {
                out.exe_clean += stat("Rss");
            }
        } else if m.pathname == MMapPath::Stack && main_thread && frame > start && frame < end {
            let top = frame.saturating_sub(STACK_MARGIN) & !(page - 1);
            if top > start {
                let resident = stat("Rss").min(top - start);
                // SAFETY: the range is the main thread's own stack, more than STACK_MARGIN
                // below the frame of this function, which runs on it: no live data lies
                // there (the stack grows down), and pages dropped from a private anonymous
                // mapping come back zeroed when touched.
                if unsafe { dontneed(start, top - start) } {
                    out.stack += resident;
                }
            }
        }
    }
    out.heap_trimmed = trim_heap();
    Ok(out)
}

/// # Safety
/// `[addr, addr + len)` must hold nothing that cannot be lost (see `MADV_DONTNEED`).
unsafe fn dontneed(addr: u64, len: u64) -> bool {
    // SAFETY: the caller vouches for the range; madvise validates it otherwise.
    let rc = unsafe { libc::madvise(addr as *mut libc::c_void, len as usize, libc::MADV_DONTNEED) };
    if rc != 0 {
        tracing::debug!(addr, len, error = %std::io::Error::last_os_error(), "madvise(DONTNEED) failed");
    }
    rc == 0
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as u64)
}

#[cfg(target_env = "gnu")]
fn trim_heap() -> bool {
    // SAFETY: malloc_trim only walks and shrinks glibc's own arenas, under their locks.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// musl's allocator returns free memory by itself.
#[cfg(not(target_env = "gnu"))]
fn trim_heap() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exe_rss() -> u64 {
        let exe = std::fs::metadata("/proc/self/exe").unwrap();
        Process::myself()
            .unwrap()
            .smaps()
            .unwrap()
            .into_iter()
            .filter(|m| m.inode == exe.ino() && !m.perms.contains(MMPermissions::WRITE))
            .map(|m| m.extension.map.get("Rss").copied().unwrap_or(0))
            .sum()
    }

    const TEST: &str = "memory::tests::releases_clean_executable_pages_and_keeps_running";

    #[test]
    fn releases_clean_executable_pages_and_keeps_running() {
        // Other tests of this binary run in parallel threads and fault code back in: the
        // measurement runs in a child of this test binary with this test alone.
        if std::env::var_os("MEMORY_TEST_ALONE").is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", TEST, "--test-threads=1", "--nocapture"])
                .env("MEMORY_TEST_ALONE", "1")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
            return;
        }
        let before = exe_rss();
        let r = release_idle_memory().unwrap();
        let after = exe_rss();
        assert!(r.exe_clean > 0, "{r:?}");
        assert!(
            after < before,
            "executable RSS did not fall: {before} -> {after} ({r:?})"
        );
        // Code, constants and relocated data all still work after the release.
        let v: serde_json::Value = serde_json::from_str(r#"{"a":[1,2,3]}"#).unwrap();
        assert_eq!(v["a"][2], 3);
        assert_eq!(format!("{:?}", Some("x")), "Some(\"x\")");
    }
}
