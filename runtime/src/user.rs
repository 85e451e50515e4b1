//! Resolves a Docker-style `user` string (`name`, `uid`, `uid:gid`, `name:group`)
//! against the image's own `/etc/passwd` and `/etc/group`, never the host's.

use std::path::{Path, PathBuf};

/// Errors from user resolution.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("failed to resolve user {user:?}: no such user in the image's /etc/passwd")]
    UnknownUser { user: String },
    #[error("failed to resolve group {group:?}: no such group in the image's /etc/group")]
    UnknownGroup { group: String },
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A resolved user: ids, supplementary groups and home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Reads an optional file under the rootfs; a missing file is empty (scratch images).
fn read_optional(rootfs: &Path, rel: &str) -> Result<String, UserError> {
    let path = rootfs.join(rel);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(UserError::Read { path, source }),
    }
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// Resolves `user` (None = root) plus `extra_groups` in the image at `rootfs`.
///
/// Rules follow Docker: a numeric uid absent from passwd is allowed (gid defaults to
/// the uid's passwd gid or 0, HOME to `/`); a name must exist; the supplementary
/// groups are the groups listing the user by name, plus `extra_groups`.
pub fn resolve(
    rootfs: &Path,
    user: Option<&str>,
    extra_groups: &[String],
) -> Result<ResolvedUser, UserError> {
    let passwd = parse_passwd(&read_optional(rootfs, "etc/passwd")?);
    let groups = parse_group(&read_optional(rootfs, "etc/group")?);
    let spec = user.unwrap_or("0");
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|p| p.uid == uid),
        Err(_) => Some(passwd.iter().find(|p| p.name == user_part).ok_or_else(|| {
            UserError::UnknownUser {
                user: user_part.to_string(),
            }
        })?),
    };
    let uid = entry
        .map(|e| e.uid)
        .unwrap_or_else(|| user_part.parse().unwrap_or(0));
    let lookup_group = |g: &str| -> Result<u32, UserError> {
        match g.parse::<u32>() {
            Ok(gid) => Ok(gid),
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| UserError::UnknownGroup {
                    group: g.to_string(),
                }),
        }
    };
    let gid = match group_part {
        Some(g) => lookup_group(g)?,
        None => entry.map(|e| e.gid).unwrap_or(0),
    };
    let mut additional_gids = Vec::new();
    // Supplementary groups from /etc/group only when the user was given without an
    // explicit group, as Docker does.
    if let (Some(e), None) = (entry, group_part) {
        for g in &groups {
            if g.members.iter().any(|m| m == &e.name) && g.gid != gid {
                additional_gids.push(g.gid);
            }
        }
    }
    for g in extra_groups {
        let gid = lookup_group(g)?;
        if !additional_gids.contains(&gid) {
            additional_gids.push(gid);
        }
    }
    let home = entry
        .map(|e| e.home.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string());
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app\naudio:x:29:app,other\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn resolves_names_ids_and_groups() {
        let r = rootfs();
        let root = resolve(r.path(), None, &[]).unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let nobody = resolve(r.path(), Some("nobody"), &[]).unwrap();
        assert_eq!((nobody.uid, nobody.gid), (65534, 65534));
        let app = resolve(r.path(), Some("app"), &[]).unwrap();
        assert_eq!(app.additional_gids, vec![10, 29]);
        assert_eq!(app.home, "/home/app");
        let app_grp = resolve(r.path(), Some("app:nogroup"), &[]).unwrap();
        assert_eq!((app_grp.uid, app_grp.gid), (1000, 65534));
        assert!(app_grp.additional_gids.is_empty());
        let numeric = resolve(r.path(), Some("4242:4343"), &["wheel".into()]).unwrap();
        assert_eq!(
            (numeric.uid, numeric.gid, numeric.home.as_str()),
            (4242, 4343, "/")
        );
        assert_eq!(numeric.additional_gids, vec![10]);
        let by_uid = resolve(r.path(), Some("1000"), &[]).unwrap();
        assert_eq!((by_uid.gid, by_uid.home.as_str()), (1000, "/home/app"));
    }

    #[test]
    fn unknown_names_are_errors() {
        let r = rootfs();
        let e = resolve(r.path(), Some("ghost"), &[]).unwrap_err();
        assert!(e.to_string().contains("\"ghost\""), "{e}");
        let e = resolve(r.path(), Some("app:ghosts"), &[]).unwrap_err();
        assert!(matches!(e, UserError::UnknownGroup { .. }), "{e}");
    }

    #[test]
    fn scratch_image_without_passwd_allows_numeric_ids() {
        let dir = tempfile::tempdir().unwrap();
        let u = resolve(dir.path(), Some("1001:1002"), &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1001, 1002));
        assert!(resolve(dir.path(), Some("nobody"), &[]).is_err());
    }
}
