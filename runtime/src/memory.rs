//! Giving memory back once a long-lived process has gone idle: the task supervisor runs
//! for as long as its task, but most of what it touched was for setting the task up.
//!
//! - Read-only private file mappings (the executable's code, constants and relocated
//!   data, the same of every shared library): the page table entries of their file pages
//!   are dropped (`MADV_DONTNEED`). The pages stay in the page cache (one copy for every
//!   process using the file) and fault back in, without I/O while cached, when next used.
//!   Pages the loader wrote (relocations, made read-only afterwards) are anonymous copies:
//!   `/proc/self/pagemap` tells them apart, page by page, and they stay.
//! - The main thread's stack below the current frame (minus a margin): whatever
//!   lies there is dead by the ABI and comes back as zero pages if the stack grows again.
//! - glibc's malloc heaps: `malloc_trim(0)` returns free pages of every arena.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use procfs::process::{MMPermissions, MMapPath, MemoryPageFlags, PageInfo, Process};

/// What [`release_idle_memory`] gave back, in bytes of resident memory.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// File pages of read-only private mappings (the executable, shared libraries)
    /// unmapped from this process.
    pub file_clean: u64,
    /// Resident pages of the main thread's stack below the live frames.
    pub stack: u64,
    /// Whether glibc released free heap memory to the system.
    pub heap_trimmed: bool,
}

/// Stack kept below the frames live when the stack is released (the caller's and this
/// module's, down to the one that makes the `madvise` call: see
/// `release_all_but_file_pages`): far beyond the 128-byte red zone, that call's own frames
/// (a system call wrapper) and what the caller runs next on its way back to waiting (the
/// supervisor: a channel receive). Anything deeper later (a signal handler, an event's
/// handling) gets zero pages on first touch. 16 KiB kept an idle supervisor's stack 3
/// dirty pages larger (docs/benchmarks.md, "Supervisor memory").
const STACK_MARGIN: u64 = 4 << 10;

/// Gives back what an idle process does not need resident (module docs). Call it at a
/// quiet point; the next use of released code or stack costs a minor page fault.
///
/// Every page this process touches after the release comes back, and with it the
/// neighbours the kernel maps around a fault (64 KiB): so all the reading, freeing and
/// logging happens first, and the page table entries go last.
pub fn release_idle_memory() -> std::io::Result<Released> {
    let marker = 0u8;
    let (file_runs, mut out) = release_all_but_file_pages(std::ptr::addr_of!(marker) as u64)?;
    // SAFETY: the runs are `plan`'s, taken just now.
    out.file_clean = unsafe { drop_file_runs(&file_runs) };
    Ok(out)
}

/// As [`release_idle_memory`], but the file pages are released `settle` later by a
/// thread kept for this, once the caller has gone back to waiting: the code the caller
/// runs on its way there then stays released too. That thread allocates nothing and
/// runs little code after the release. `file_clean` is what it is to release.
pub fn release_idle_memory_deferred(settle: Duration) -> std::io::Result<Released> {
    let marker = 0u8;
    let (file_runs, mut out) = release_all_but_file_pages(std::ptr::addr_of!(marker) as u64)?;
    out.file_clean = file_runs.iter().map(|r| r.2).sum();
    let releaser = releaser()?;
    *releaser.runs.lock().unwrap_or_else(|p| p.into_inner()) = file_runs;
    releaser.settle.store(
        u64::try_from(settle.as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    nix::unistd::write(&releaser.wake, b"r").map_err(std::io::Error::from)?;
    Ok(out)
}

/// Drops the page table entries of `runs`; the resident bytes it gave back.
///
/// # Safety
/// Every run must be one of [`plan`]'s: it lies in a private, read-only mapping of a
/// loaded ELF object and holds no anonymous page. Dropping its page table entries then
/// loses nothing, as every page reads back from the file with the same contents; and
/// those mappings stay at their addresses for the life of the process, so runs planned
/// a while ago are still theirs.
unsafe fn drop_file_runs(runs: &[(u64, u64, u64)]) -> u64 {
    let mut dropped = 0;
    for &(from, to, resident) in runs {
        // SAFETY: the caller vouches for the run (see above).
        if unsafe { dontneed(from, to - from) } {
            dropped += resident;
        }
    }
    dropped
}

/// Plans the release, trims the heap, releases the stack below `frame` (the caller's,
/// on the main thread); returns the file page runs still to release.
fn release_all_but_file_pages(frame: u64) -> std::io::Result<(FileRuns, Released)> {
    // The margin is kept below this frame too, which is deeper than the caller's: the
    // `madvise` below runs from here, so only its own call lies under this frame then.
    let here = 0u8;
    let frame = frame.min(std::ptr::addr_of!(here) as u64);
    let (file_runs, stack) = plan(frame)?;
    let heap_trimmed = trim_heap();
    tracing::debug!(
        file_pages = file_runs.iter().map(|r| r.2).sum::<u64>(),
        stack = stack.map_or(0, |r| r.2),
        heap_trimmed,
        "releasing idle memory"
    );
    let mut out = Released {
        heap_trimmed,
        ..Default::default()
    };
    if let Some((from, to, resident)) = stack {
        // SAFETY: the range is the main thread's own stack, more than STACK_MARGIN below
        // `frame`, this function's frame or its caller's, whichever is deeper: the only
        // frames live below it are the `madvise` call's, well inside the margin, so no live
        // data lies in the range (the stack grows down), and pages dropped from a private
        // anonymous mapping come back zeroed when touched.
        if unsafe { dontneed(from, to - from) } {
            out.stack = resident;
        }
    }
    Ok((file_runs, out))
}

/// The thread of [`release_idle_memory_deferred`]: woken through a pipe, it waits the
/// settle time and drops the page table entries of `runs`.
struct Releaser {
    runs: Mutex<FileRuns>,
    settle: AtomicU64,
    wake: OwnedFd,
}

fn releaser() -> std::io::Result<&'static Releaser> {
    static RELEASER: OnceLock<Releaser> = OnceLock::new();
    if let Some(r) = RELEASER.get() {
        return Ok(r);
    }
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let r = RELEASER.get_or_init(|| Releaser {
        runs: Mutex::new(Vec::new()),
        settle: AtomicU64::new(0),
        wake: write,
    });
    threadgate::spawn(
        std::thread::Builder::new().name("release".into()),
        move || release_loop(read, r),
    )?;
    Ok(r)
}

fn release_loop(wake: OwnedFd, r: &'static Releaser) {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(wake.as_raw_fd(), &mut byte) {
            Ok(0) => return,
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(_) => return,
        }
        std::thread::sleep(Duration::from_micros(r.settle.load(Ordering::Relaxed)));
        let runs = r.runs.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: `runs` are `plan`'s, as `release_idle_memory_deferred` stores them.
        unsafe { drop_file_runs(&runs) };
    }
}

/// What to release, as `(from, to, resident bytes)`: the runs of file pages of private
/// read-only file mappings, and (on the main thread) the stack more than [`STACK_MARGIN`]
/// below `frame`.
type Plan = (FileRuns, Option<(u64, u64, u64)>);

/// Runs of file pages to release: `(from, to, resident bytes)`.
type FileRuns = Vec<(u64, u64, u64)>;

fn plan(frame: u64) -> std::io::Result<Plan> {
    let main_thread = nix::unistd::gettid() == nix::unistd::getpid();
    let page = page_size();
    let me = Process::myself().map_err(std::io::Error::other)?;
    let maps = me.smaps().map_err(std::io::Error::other)?;
    // Loaded ELF objects (the executable, shared libraries): files with code mapped. They
    // stay mapped where they are, unlike a data file some code maps for a while, whose
    // addresses could be reused by the time a deferred release runs.
    let objects: std::collections::HashSet<(u64, (i32, i32))> = maps
        .iter()
        .filter(|m| {
            matches!(m.pathname, MMapPath::Path(_)) && m.perms.contains(MMPermissions::EXECUTE)
        })
        .map(|m| (m.inode, m.dev))
        .collect();
    let mut pagemap = None;
    let mut file_runs = Vec::new();
    let mut stack = None;
    for m in maps {
        let stat = |k: &str| m.extension.map.get(k).copied().unwrap_or(0);
        let (start, end) = m.address;
        // Nothing can write to a private read-only mapping: its pages stay what they are
        // now (file pages, or the anonymous copies the loader wrote before it made them
        // read-only) until they are released.
        let read_only_file = matches!(m.pathname, MMapPath::Path(_))
            && objects.contains(&(m.inode, m.dev))
            && !m.perms.contains(MMPermissions::WRITE)
            && !m.perms.contains(MMPermissions::SHARED)
            && stat("Rss") > 0;
        if read_only_file {
            if stat("Anonymous") == 0 && stat("Swap") == 0 {
                file_runs.push((start, end, stat("Rss")));
            } else {
                if pagemap.is_none() {
                    pagemap = Some(me.pagemap().map_err(std::io::Error::other)?);
                }
                let pm = pagemap.as_mut().expect("just opened");
                let pages = pm
                    .get_range_info((start / page) as usize..(end / page) as usize)
                    .map_err(std::io::Error::other)?;
                file_runs.extend(file_page_runs(start, page, &pages));
            }
        } else if m.pathname == MMapPath::Stack && main_thread && frame > start && frame < end {
            let top = frame.saturating_sub(STACK_MARGIN) & !(page - 1);
            if top > start {
                stack = Some((start, top, stat("Rss").min(top - start)));
            }
        }
    }
    Ok((file_runs, stack))
}

/// The maximal runs `(from, to, resident bytes)` of a mapping starting at `start` whose
/// pages are each either not resident or a resident file page: every page but the
/// anonymous ones (resident copies, swapped out).
fn file_page_runs(start: u64, page: u64, pages: &[PageInfo]) -> Vec<(u64, u64, u64)> {
    let mut runs = Vec::new();
    let mut run: Option<(u64, u64)> = None;
    for (i, info) in pages.iter().enumerate() {
        let addr = start + i as u64 * page;
        let file = match info {
            PageInfo::MemoryPage(f) if !f.contains(MemoryPageFlags::PRESENT) => Some(0),
            PageInfo::MemoryPage(f) if f.contains(MemoryPageFlags::FILE) => Some(page),
            _ => None,
        };
        match (file, run.as_mut()) {
            (Some(bytes), Some((_, resident))) => *resident += bytes,
            (Some(bytes), None) => run = Some((addr, bytes)),
            (None, Some(_)) => {
                let (from, resident) = run.take().expect("matched");
                runs.push((from, addr, resident));
            }
            (None, None) => {}
        }
    }
    if let Some((from, resident)) = run {
        runs.push((from, start + pages.len() as u64 * page, resident));
    }
    runs.retain(|&(_, _, resident)| resident > 0);
    runs
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
    use std::os::unix::fs::MetadataExt;

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

    #[test]
    fn file_page_runs_skip_only_anonymous_pages() {
        let present = MemoryPageFlags::PRESENT;
        let file = PageInfo::MemoryPage(present | MemoryPageFlags::FILE);
        let anon = PageInfo::MemoryPage(present);
        let absent = PageInfo::MemoryPage(MemoryPageFlags::empty());
        let swapped = PageInfo::parse_info((1 << 62) | (1 << 63));
        let p = 4096;
        // file, absent, anon, file, file, swapped, absent: runs [0,2) and [3,5).
        let pages = [file, absent, anon, file, file, swapped, absent];
        assert_eq!(
            file_page_runs(0x10000, p, &pages),
            vec![
                (0x10000, 0x10000 + 2 * p, p),
                (0x10000 + 3 * p, 0x10000 + 5 * p, 2 * p)
            ]
        );
        // A run of pages none of which is resident gives nothing back: not worth a call.
        assert_eq!(file_page_runs(0, p, &[absent, absent, anon]), vec![]);
        // A trailing run reaches the mapping's end.
        assert_eq!(
            file_page_runs(0, p, &[anon, absent, file]),
            vec![(p, 3 * p, p)]
        );
    }

    /// Other tests of this binary run in parallel threads and fault code back in: a
    /// measurement runs in a child of this test binary with test `name` alone. True in
    /// that child; in the parent, runs it and checks it passed.
    fn alone(name: &str) -> bool {
        if std::env::var_os("MEMORY_TEST_ALONE").is_some() {
            return true;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1", "--nocapture"])
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
        false
    }

    /// Code, constants and relocated data all still work after a release.
    fn still_works() {
        let v: serde_json::Value = serde_json::from_str(r#"{"a":[1,2,3]}"#).unwrap();
        assert_eq!(v["a"][2], 3);
        assert_eq!(format!("{:?}", Some("x")), "Some(\"x\")");
    }

    #[test]
    fn releases_clean_executable_pages_and_keeps_running() {
        if !alone("memory::tests::releases_clean_executable_pages_and_keeps_running") {
            return;
        }
        let before = exe_rss();
        let r = release_idle_memory().unwrap();
        let after = exe_rss();
        assert!(r.file_clean > 0, "{r:?}");
        assert!(
            after < before,
            "executable RSS did not fall: {before} -> {after} ({r:?})"
        );
        still_works();
    }

    #[test]
    fn a_deferred_release_happens_after_the_settle_time_and_again_on_request() {
        if !alone(
            "memory::tests::a_deferred_release_happens_after_the_settle_time_and_again_on_request",
        ) {
            return;
        }
        for round in 0..2 {
            still_works();
            let before = exe_rss();
            let r = release_idle_memory_deferred(Duration::from_millis(300)).unwrap();
            assert!(r.file_clean > 0, "{r:?}");
            // Not yet: the releasing thread waits for the caller to settle.
            let soon = exe_rss();
            assert!(
                soon * 10 >= before * 9,
                "released early: {before} -> {soon}"
            );
            std::thread::sleep(Duration::from_millis(1500));
            // (Measuring faults some code back in: less than dropped, then.)
            let after = exe_rss();
            assert!(
                after < soon && after < before,
                "round {round}: executable RSS did not fall: {before} -> {soon} -> {after} ({r:?})"
            );
        }
        still_works();
    }
}
