//! etcd's users and roles (docs/cluster.md "Security"): `cluster enable-auth` creates them
//! from the bundles `cluster init` and `cluster add-box` made, and turns etcd's
//! authentication on; `cluster add-box NAME --cluster` adds one box's user to a running
//! etcd. Each client's certificate proves it belongs to the cluster (its CA); its etcd
//! user, a password in its bundle, says who it is:
//!
//! - `root` (the operator) and `minifargate-serve` have etcd's role `root`: serve is the
//!   control plane (and only root may change users and roles).
//! - `minifargate-box-NAME` has a role of the same name. `cluster add-box` grants it its
//!   own prefix (`boxes/NAME/`: its agent claims its instances and reports its tasks
//!   there) and its task subnets' keys (`subnets/NAME/`; the others' it reads), not the
//!   cluster's token (its agent's endpoint knows serve and the operator
//!   by their certificates' roles, [`super::endpoint::callers`]); serve's leader grants it an instance's keys once it
//!   bound the instance to the box ([`bind_claim`]): it writes no other instance's
//!   registration, status, ledger or assignments, and reads its own status (serve's
//!   leader creates it, the API changes it: the box cannot undo DRAINING or INACTIVE).

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
    #[error(
        "etcd {endpoints} has its authentication off, so every certificate of the cluster \
         (every box's) reads and writes every key: run `minifargate cluster enable-auth --dir \
         DIR --cluster {endpoints}` where `cluster init` made DIR (a serve whose bundle is \
         DIR/serve, next to DIR/admin, turns it on itself)"
    )]
    AuthOff { endpoints: String },
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
    add_box_user(etcd, name, &u, &password).await
}

/// Whether etcd has user `user`.
pub async fn user_exists(etcd: &Etcd, user: &str) -> Result<bool, EtcdError> {
    match etcd
        .auth_call("/v3/auth/user/get", json!({ "name": user }))
        .await
    {
        Ok(_) => Ok(true),
        Err(EtcdError::Refused { message, .. }) if message.contains("not found") => Ok(false),
        Err(e) => Err(e),
    }
}

/// Box `name`'s etcd user and role gone (`cluster remove-box`): its bundle's password
/// opens nothing from then on. Either may be absent already (a box joined with a token
/// has none); whether either was there.
pub async fn remove_box(etcd: &Etcd, name: &str) -> Result<bool, EtcdError> {
    let r = pki::box_user(name);
    let mut removed = false;
    for (call, body) in [
        ("/v3/auth/user/delete", json!({ "name": r })),
        ("/v3/auth/role/delete", json!({ "role": r })),
    ] {
        match etcd.auth_call(call, body).await {
            Err(EtcdError::Refused { message, .. }) if message.contains("not found") => {}
            r => {
                r?;
                removed = true;
            }
        }
    }
    Ok(removed)
}

/// Box `name`'s user `u` with `password`, and its role with the box's ranges.
pub async fn add_box_user(
    etcd: &Etcd,
    name: &str,
    u: &str,
    password: &str,
) -> Result<(), UsersError> {
    let r = pki::box_user(name);
    role(etcd, &r).await?;
    etcd.grant_prefix(&r, &keys::box_prefix(name), true).await?;
    // Its own task subnets' keys; the others' read (a claim compares the whole prefix,
    // and the agent routes every other box's subnet).
    etcd.grant_prefix(&r, &keys::box_subnets(name), true)
        .await?;
    etcd.grant_prefix(&r, &keys::subnets(), false).await?;
    // The serves' registries its tasks' images come from (crate::cluster::registries).
    etcd.grant_prefix(&r, &keys::registries(), false).await?;
    // The names its tasks' DNS server answers (crate::cluster::names).
    etcd.grant_prefix(&r, &keys::dns(), false).await?;
    // The load balancers its data plane's listeners run (crate::cluster::balancers).
    etcd.grant_prefix(&r, &keys::elb(), false).await?;
    // The key read for the store's revision alone.
    etcd.grant_key(&r, "/minifargate", false).await?;
    user(etcd, u, password, &r).await?;
    Ok(())
}

/// Secure by default: a client with an etcd user (a bundle of `cluster init`) does not
/// work on an etcd whose authentication is off. A serve whose bundle is `DIR/serve` of a
/// `cluster init` directory that also holds the operator's (`DIR/admin`) turns it on as
/// `cluster enable-auth --dir DIR` would; any other client is refused with the command.
/// A client without an etcd user (a plain etcd) is not asked.
pub async fn ensure_auth(etcd: &Etcd) -> Result<(), UsersError> {
    if etcd.auth_on().await? != Some(false) {
        return Ok(());
    }
    let layout = etcd
        .bundle()
        .filter(|b| b.file_name().is_some_and(|n| n == "serve"))
        .and_then(|b| b.parent())
        .map(|d| Layout { dir: d.into() })
        .filter(|l| l.admin().join(pki::PASSWORD_FILE).exists());
    let Some(layout) = layout else {
        return Err(UsersError::AuthOff {
            endpoints: etcd.endpoints().join(","),
        });
    };
    let boxes = enable(etcd, &layout).await?;
    tracing::warn!(
        dir = %layout.dir.display(), boxes = %boxes.join(","),
        "etcd's authentication was off: turned on with the users and roles of the cluster's \
         bundles (as `cluster enable-auth`)"
    );
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

/// Settles claim `key` (another key under the boxes' prefix is ignored): an instance no
/// box holds yet is bound to the box that claims it (`bindings/<id>`, created only if
/// absent), its status created ACTIVE unless it has one, a bundle box's role granted the
/// instance's keys ([`keys::instance_keys`]: its status to read only; a joined box has no
/// role, serve's port for boxes reads the binding), then `boxes/NAME/bound/...` written
/// for the agent. A claim of an instance bound to another
/// box is refused (said once). `done` holds the claims settled by this leader (each
/// granted once a term).
pub async fn bind_claim(
    etcd: &Etcd,
    key: &str,
    done: &mut std::collections::BTreeSet<String>,
) -> Result<(), EtcdError> {
    let Some((name, c, id)) = keys::parse_box_claim(key) else {
        return Ok(());
    };
    if done.contains(key) {
        return Ok(());
    }
    if !claimable(c, id) {
        tracing::warn!(key = %key, "a box's claim that names no instance: ignored");
        done.insert(key.to_string());
        return Ok(());
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
        done.insert(key.to_string());
        return Ok(());
    }
    // The status is serve's: created ACTIVE here, before the box may register (an
    // existing one, DRAINING or INACTIVE, is kept: a claim settled again by a new leader
    // or a restarted agent changes nothing), then changed by the API only.
    etcd.put_if_absent(
        &keys::status(c, id),
        super::instances::Status::Active.as_str().as_bytes(),
    )
    .await?;
    // A box that joined with a token has no etcd user (its calls pass serve's port for
    // boxes, which reads its bindings: super::rights): nothing of etcd's auth store
    // changes, so no client's token is made old (issue 76). A box of a `cluster add-box`
    // bundle, with its own etcd connection, is granted the instance's keys.
    let joined = etcd.get(&keys::joined_box(name)).await?.is_some();
    if !joined {
        grant_instance(etcd, name, c, id).await?;
    }
    etcd.put(&keys::box_bound(name, c, id), b"", None).await?;
    tracing::info!(instance = %id, cluster = %c, r#box = %name, joined, "instance bound to its box");
    done.insert(key.to_string());
    Ok(())
}

/// Box `name`'s etcd role granted instance `id`'s keys ([`keys::instance_keys`]).
async fn grant_instance(etcd: &Etcd, name: &str, c: &str, id: &str) -> Result<(), EtcdError> {
    let role = pki::box_user(name);
    for (k, exact, grant) in keys::instance_keys(c, id) {
        // Granting a range again replaces its permission: a role an older version let
        // write its status reads it only from the next binding on.
        let write = grant == keys::Grant::Write;
        if exact {
            etcd.grant_key(&role, &k, write).await?;
        } else {
            etcd.grant_prefix(&role, &k, write).await?;
        }
    }
    // The load balancers its data plane runs: a role an older version made reads them
    // from the next binding on.
    etcd.grant_prefix(&role, &keys::elb(), false).await
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
