//! `/proc/<pid>/mountinfo` (proc(5)), parsed here and nowhere else in minifargate: the
//! cgroup layout ([`crate::CgroupLayout`]), the read-only cgroup paths of a container's
//! spec, and the binary's `inspect` and volume cleanup.
//!
//! Why not the `procfs` crate (already a dependency through libcontainer): procfs-core
//! 0.18 keeps the mount point and source as the kernel escapes them (`\040` for a
//! space), and folds the super options into a HashMap, which loses the order of
//! overlayfs' repeated `lowerdir+=` options that `inspect` reports.

use std::path::PathBuf;

/// One line of mountinfo. Paths are unescaped; `super_options` is kept raw (escaped,
/// comma-separated) because overlayfs' options need their own splitting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The directory of the filesystem mounted here (`/` unless a bind of a subtree).
    pub root: String,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,relatime`).
    pub mount_options: String,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

impl MountInfo {
    pub fn read_only(&self) -> bool {
        self.mount_options.split(',').any(|o| o == "ro")
    }
}

/// Every well-formed line of `text`; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountInfo> {
    // id parent major:minor root mount-point options [optional fields…] - fstype source super
    let (pre, post) = line.split_once(" - ")?;
    let f: Vec<&str> = pre.split(' ').collect();
    let (root, mount_point, mount_options) = (f.get(3)?, f.get(4)?, f.get(5)?);
    let mut post = post.splitn(3, ' ');
    Some(MountInfo {
        root: unescape(root),
        mount_point: PathBuf::from(unescape(mount_point)),
        mount_options: mount_options.to_string(),
        fs_type: post.next()?.to_string(),
        source: unescape(post.next().unwrap_or_default()),
        super_options: post.next().unwrap_or_default().to_string(),
    })
}

/// This process's mounts (`/proc/self/mountinfo`); none when it cannot be read.
pub fn own() -> Vec<MountInfo> {
    parse(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(oct) = std::str::from_utf8(&b[i + 1..i + 4])
            && let Ok(v) = u8::from_str_radix(oct, 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_optional_fields_and_escapes() {
        let mi = "36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:10 master:2 - cgroup2 cgroup2 rw,nsdelegate\n\
                  90 30 0:50 /sub /mnt/a\\040b ro,relatime - tmpfs my\\040src rw,size=64k\n\
                  garbage\n";
        let m = parse(mi);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(m[0].fs_type, "cgroup2");
        assert_eq!(m[0].super_options, "rw,nsdelegate");
        assert!(!m[0].read_only());
        assert_eq!(m[1].root, "/sub");
        assert_eq!(m[1].mount_point, PathBuf::from("/mnt/a b"));
        assert_eq!(m[1].source, "my src");
        assert!(m[1].read_only());
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("/a\\040b/c"), "/a b/c");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/back\\134slash"), "/back\\slash");
    }
}
