//! etcd's users and roles (docs/cluster.md "Security"): `cluster enable-auth` creates them
//! from the bundles `cluster init` and `cluster add-box` made, and turns etcd's
//! authentication on; `cluster add-box NAME --cluster` adds one box's user to a running
//! etcd. Each client's certificate proves it belongs to the cluster (its CA); its etcd
//! user, a password in its bundle, says who it is:
//!
//! - `root` (the operator) and `minifargate-serve` have etcd's role `root`: serve is the
//!   control plane (and only root may change users and roles).
//! - `minifargate-box-NAME` has a role of the same name. `cluster add-box` grants it its
//!   own prefix (`boxes/NAME/`: its agent claims its instances there) and the task
//!   subnets, not the cluster's token (its agent's endpoint knows serve and the operator
//!   by their certificates' roles, [`super::endpoint::callers`]); serve's leader grants it an instance's keys once it
//!   bound the instance to the box ([`bind`]): it writes no other instance's
//!   registration, status, ledger or assignments.

use super::etcd::{Etcd, EtcdError};
use super::keys;
use super::pki::{self, Layout, PkiError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("failed to list {path}")]
    List {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Whether etcd refused because what was asked for exists already.
fn exists(e: &EtcdError) -> bool {
    matches!(e, EtcdError::Refused { message, .. } if message.contains("already exists"))
}

/// Creates etcd user `user` with `password` (or sets its password when it exists), with
/// role `role`.
async fn user(etcd: &Etcd, user: &str, password: &str, role: &str) -> Result<(), EtcdError> {
    match etcd
        .auth_call(
            "/v3/auth/user/add",
            json!({ "name": user, "password": password }),
        )
        .await
    {
        Err(e) if exists(&e) => {
            etcd.auth_call(
                "/v3/auth/user/changepw",
                json!({ "name": user, "password": password }),
            )
            .await?;
        }
        r => {
            r?;
        }
    }
    etcd.auth_call("/v3/auth/user/grant", json!({ "user": user, "role": role }))
        .await
        .map(drop)
}

/// Creates role `role` unless it exists.
async fn role(etcd: &Etcd, role: &str) -> Result<(), EtcdError> {
    match etcd
        .auth_call("/v3/auth/role/add", json!({ "name": role }))
        .await
    {
        Err(e) if exists(&e) => Ok(()),
        r => r.map(drop),
    }
}

/// Box `name`'s user (its bundle's password) and role.
pub async fn add_box(etcd: &Etcd, layout: &Layout, name: &str) -> Result<(), UsersError> {
    let (u, password) = pki::credentials(&layout.box_bundle(name))?;
    let r = pki::box_user(name);
    role(etcd, &r).await?;
    etcd.grant_prefix(&r, &keys::box_prefix(name), true).await?;
    etcd.grant_prefix(&r, &keys::subnets(), true).await?;
    // The key read for the store's revision alone.
    etcd.grant_key(&r, "/minifargate", false).await?;
    user(etcd, &u, &password, &r).await?;
    Ok(())
}

/// Whether `id` is an instance id (32 lowercase hex) and `cluster` an ECS cluster name: a
/// claim names nothing else (no `/`, so no prefix of other keys).
fn claimable(cluster: &str, id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && !cluster.is_empty()
        && cluster.len() <= 255
        && cluster
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One pass of serve's leader over the boxes' claims: an instance no box holds yet is
/// bound to the box that claims it (`bindings/<id>`, created only if absent), its role
/// granted the instance's keys ([`keys::instance_keys`]), then `boxes/NAME/bound/...`
/// written for the agent. A claim of an instance bound to another box is refused (said
/// once). `done` holds the claims settled by this leader (each granted once a term).
pub async fn bind(
    etcd: &Etcd,
    done: &mut std::collections::BTreeSet<String>,
) -> Result<(), EtcdError> {
    for kv in etcd.get_prefix(&keys::boxes()).await? {
        let Some((name, c, id)) = keys::parse_box_claim(&kv.key) else {
            continue;
        };
        if done.contains(&kv.key) {
            continue;
        }
        if !claimable(c, id) {
            tracing::warn!(key = %kv.key, "a box's claim that names no instance: ignored");
            done.insert(kv.key.clone());
            continue;
        }
        let binding = keys::binding(id);
        etcd.put_if_absent(&binding, name.as_bytes()).await?;
        let owner = etcd
            .get(&binding)
            .await?
            .map(|b| b.value)
            .unwrap_or_default();
        if owner != name.as_bytes() {
            tracing::warn!(
                claimed_by = %name, bound_to = %String::from_utf8_lossy(&owner), instance = %id,
                "a box claims an instance bound to another box: refused"
            );
            done.insert(kv.key.clone());
            continue;
        }
        let role = pki::box_user(name);
        for (key, exact) in keys::instance_keys(c, id) {
            if exact {
                etcd.grant_key(&role, &key, true).await?;
            } else {
                etcd.grant_prefix(&role, &key, true).await?;
            }
        }
        etcd.put(&keys::box_bound(name, c, id), b"", None).await?;
        tracing::info!(instance = %id, cluster = %c, etcd_user = %role, "instance bound to its box");
        done.insert(kv.key.clone());
    }
    Ok(())
}

/// `cluster enable-auth`: the users of `layout`'s bundles (root, serve, every box), then
/// etcd's authentication on. Run again, it sets the passwords again and adds new boxes.
/// The boxes' names, in order.
pub async fn enable(etcd: &Etcd, layout: &Layout) -> Result<Vec<String>, UsersError> {
    role(etcd, "root").await?;
    for bundle in [layout.admin(), layout.serve()] {
        let (u, password) = pki::credentials(&bundle)?;
        user(etcd, &u, &password, "root").await?;
    }
    let boxes = layout.dir.join("boxes");
    let mut names = Vec::new();
    match std::fs::read_dir(&boxes) {
        Ok(dir) => {
            for e in dir {
                let e = e.map_err(|source| UsersError::List {
                    path: boxes.clone(),
                    source,
                })?;
                if e.path().join(pki::PASSWORD_FILE).exists() {
                    names.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(UsersError::List {
                path: boxes,
                source,
            });
        }
    }
    names.sort();
    for n in &names {
        add_box(etcd, layout, n).await?;
    }
    etcd.auth_call("/v3/auth/enable", json!({})).await?;
    Ok(names)
}
