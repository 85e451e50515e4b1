//! The box's EC2 instance id (`i-` and 17 hex digits, as EC2's ids are written): what
//! DescribeContainerInstances shows as `ec2InstanceId` and what an `instance` target
//! group registers. Kept beside state.db, so it is the same across restarts.

use super::{Store, StoreError};
use std::path::Path;

/// The file under the state root that holds the id.
const FILE: &str = "ec2-instance-id";

/// Whether `s` is written as an EC2 instance id (`i-` and 8 or 17 hex digits).
pub fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-").is_some_and(|h| {
        (h.len() == 17 || h.len() == 8) && h.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// The EC2 instance id of the box whose identity is `identity` (a cluster agent's
/// container instance id): the same identity always gives the same id.
pub fn derived(identity: &str) -> String {
    // FNV-1a over 128 bits; 17 hex digits of it.
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in identity.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013B);
    }
    format!("i-0{:016x}", (h >> 64) as u64 ^ h as u64)
}

impl Store {
    /// This box's EC2 instance id: made (at random) the first time and kept in the
    /// state root.
    pub fn ec2_instance_id(&self) -> Result<String, StoreError> {
        let root = self.path.parent().unwrap_or(Path::new("."));
        this_box(root)
    }
}

/// The EC2 instance id kept under state root `root` (made the first time).
pub fn this_box(root: &Path) -> Result<String, StoreError> {
    let path = root.join(FILE);
    let io = |source| StoreError::InstanceId {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if is_instance_id(s.trim()) => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let id = derived(&hex::encode(b));
    // Written whole under another name, then renamed: two first readers agree on one id.
    let tmp = root.join(format!("{FILE}.{}", std::process::id()));
    std::fs::write(&tmp, format!("{id}\n")).map_err(io)?;
    if let Err(e) = std::fs::hard_link(&tmp, &path) {
        let _ = std::fs::remove_file(&tmp);
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(io(e));
        }
        let s = std::fs::read_to_string(&path).map_err(io)?;
        return Ok(s.trim().to_string());
    }
    let _ = std::fs::remove_file(&tmp);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_kept_and_shaped_as_ec2s() {
        let dir = tempfile::tempdir().unwrap();
        let a = this_box(dir.path()).unwrap();
        assert!(is_instance_id(&a), "{a}");
        assert_eq!(a.len(), 19);
        assert_eq!(this_box(dir.path()).unwrap(), a, "the same across restarts");
        let other = tempfile::tempdir().unwrap();
        assert_ne!(this_box(other.path()).unwrap(), a);
        assert_eq!(derived("abc"), derived("abc"));
        assert_ne!(derived("abc"), derived("abd"));
        assert!(is_instance_id(&derived("abc")));
        assert!(!is_instance_id("i-xyz"));
        assert!(!is_instance_id("10.0.0.1"));
    }
}
