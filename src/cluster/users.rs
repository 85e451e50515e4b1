//! etcd's users and roles (docs/cluster.md "Security"): `cluster enable-auth` creates them
//! from the bundles `cluster init` and `cluster add-box` made, and turns etcd's
//! authentication on; `cluster add-box NAME --cluster` adds one box's user to a running
//! etcd. Each client's certificate proves it belongs to the cluster (its CA); its etcd
//! user, a password in its bundle, says who it is:
//!
//! - `root` (the operator) and `minifargate-serve` have etcd's role `root`: serve is the
//!   control plane (and only root may change users and roles).
//! - `minifargate-box-NAME` has a role of the same name, granted every key of the
//!   cluster for now (docs/cluster.md "Security": what a box's role is kept to is the
//!   next step).

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
    etcd.grant_prefix(&r, &format!("{}/", keys::ROOT), true)
        .await?;
    user(etcd, &u, &password, &r).await?;
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
