//! Joining a box with a token (issue 73; docs/cluster.md "Joining a box with a token").
//!
//! On a control-plane host, `cluster token create` writes a token's record in etcd (the
//! SHA-256 of its secret, never the secret; the ECS cluster it joins; its expiry; how many
//! joins it has left) and prints the token, `MF1<pin>::<id>.<secret>`: `<pin>` is the
//! SHA-256 of the cluster CA's certificate, as k3s's `K10<hash>::…` pins its CA. A box's
//! `agent --server URL --token TOKEN`:
//!
//! 1. fetches the CA from serve's port for boxes (`GET /v1/cacerts`, without checking the
//!    server: nothing is sent) and keeps it only if its hash is the token's pin;
//! 2. makes its key (ECDSA P-256: it never leaves the box) and sends over TLS checked
//!    against that CA alone `POST /v1/join`: the token's id and secret, the box's name, its
//!    public key, its endpoint's addresses and its key's signature over all of them (what a
//!    CSR's self-signature proves: the sender holds the key);
//! 3. gets its certificate (role `urn:minifargate:box:NAME`, as `cluster add-box` issues)
//!    and keeps it with its key in `<root>/agent/bundle/` (0700, files 0600), written whole
//!    or not at all. The box holds no etcd credentials and has no etcd user: serve's port
//!    for boxes passes its calls on as serve, once it checked them ([`super::gateway`],
//!    [`super::rights`]).
//!
//! serve ([`admit`]) checks the token (the secret's hash, the expiry, the joins left) and
//! takes one of its uses in the same etcd transaction that records the box's name, so a
//! token of one use joins one box and no two boxes get one name; then it issues the
//! certificate with the CA's key it holds (`serve --cluster-dir`). Nothing of etcd's
//! users and roles changes (each change would make every etcd client's token old: issue
//! 76). `cluster remove-box` records the certificate's hash as revoked (every serve's port
//! for boxes follows those and refuses it at once, [`whoami`]), deletes the join record,
//! and deletes the box's etcd user and role if it has them (a box of a `cluster add-box`
//! bundle, or one joined by an older version).

use super::etcd::{Compare, Etcd, EtcdError, Op};
use super::keys;
use super::pki::{self, Layout};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What every token starts with (the format's version).
pub const PREFIX: &str = "MF1";
/// The longest request body serve's port for boxes reads.
pub const MAX_BODY: usize = 64 * 1024;
/// The most addresses a box's certificate names besides loopback.
const MAX_ADDRESSES: usize = 16;

/// A join token: the CA's pin, the token's id (its record's key) and its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub pin: String,
    pub id: String,
    pub secret: String,
}

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Token {
    /// Parses `MF1<64 hex>::<12 hex>.<32 hex>`.
    pub fn parse(s: &str) -> Result<Token, JoinError> {
        let parse = || -> Option<Token> {
            let rest = s.trim().strip_prefix(PREFIX)?;
            let (pin, cred) = rest.split_once("::")?;
            let (id, secret) = cred.split_once('.')?;
            (lower_hex(pin, 64) && lower_hex(id, 12) && lower_hex(secret, 32)).then(|| Token {
                pin: pin.into(),
                id: id.into(),
                secret: secret.into(),
            })
        };
        parse().ok_or(JoinError::BadToken)
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}{}::{}.{}", self.pin, self.id, self.secret)
    }
}

/// A token's record in etcd ([`keys::join_token`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    /// The ECS cluster a box joined with it registers in (none: the agent's own choice).
    pub cluster: Option<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Seconds since the epoch after which it joins nothing (none: no expiry).
    pub expires_at: Option<i64>,
    /// Joins left (none: any number until it expires or is revoked).
    pub uses_left: Option<u32>,
    #[serde(default)]
    pub description: String,
}

/// A box that joined ([`keys::joined_box`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinedBox {
    pub joined_at: i64,
    /// The id of the token it joined with.
    pub token: String,
    /// SHA-256 of its certificate's DER, hex.
    pub certificate_sha256: String,
    pub addresses: Vec<String>,
    pub cluster: Option<String>,
}

/// A box's join request (`POST /v1/join`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token_id: String,
    pub secret: String,
    pub name: String,
    /// The box's public key: an uncompressed P-256 point, base64.
    pub public_key: String,
    /// Its agent endpoint's addresses (the certificate's names besides loopback).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The key's ECDSA P-256 SHA-256 signature (ASN.1 DER) over [`proof_message`], base64.
    pub proof: String,
}

/// What a box signs: every field of its request but the proof.
pub fn proof_message(r: &JoinRequest) -> Vec<u8> {
    format!(
        "minifargate join v1\n{}\n{}\n{}\n{}\n{}",
        r.token_id,
        hex::encode(sha2::Sha256::digest(r.secret.as_bytes())),
        r.name,
        r.public_key,
        r.addresses.join(",")
    )
    .into_bytes()
}

/// serve's answer to a join.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinAnswer {
    pub name: String,
    /// The box's certificate (PEM).
    pub certificate: String,
    /// The cluster's CA (PEM).
    pub ca: String,
    /// The name of the box's etcd user, which a joined box no longer has (serve's port
    /// for boxes passes its calls on as serve): the agent takes a name of this form as
    /// "a box of the control plane's", which leaves its status to serve.
    pub etcd_user: String,
    pub cluster: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(
        "not a join token: expected MF1<64 hex>::<12 hex>.<32 hex>, as `minifargate cluster \
         token create` prints it"
    )]
    BadToken,
    #[error("failed to reach the control plane at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the control plane at {url} presents a CA whose SHA-256 is {got}, but the token pins \
         {want}: a wrong --server, a token of another cluster, or someone in between (nothing \
         was sent)"
    )]
    PinMismatch {
        url: String,
        got: String,
        want: String,
    },
    #[error("the control plane at {url} refused the join (HTTP {status}): {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("the control plane at {url} answered what is not a join answer: {why}")]
    BadAnswer { url: String, why: String },
    #[error("failed to make this box's key")]
    Key,
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("failed to keep the box's certificate in {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why serve refused a join or a call of its port for boxes: an HTTP status and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

fn store_error(e: EtcdError) -> Refusal {
    refuse(
        503,
        format!(
            "the control plane's store is out of reach: {}",
            crate::errors::error_chain(&e)
        ),
    )
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    crate::ecs::now_ms() / 1000
}

fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut b = vec![0u8; bytes];
    crate::task::fill_random(&mut b)?;
    Ok(hex::encode(b))
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// `cluster token create`: a new token for the CA pinned by `pin`, recorded in etcd.
pub async fn create_token(
    etcd: &Etcd,
    pin: &str,
    cluster: Option<String>,
    ttl: Option<Duration>,
    uses: Option<u32>,
    description: String,
) -> anyhow::Result<(Token, TokenRecord)> {
    let token = Token {
        pin: pin.into(),
        id: random_hex(6)?,
        secret: random_hex(16)?,
    };
    let created_at = now();
    let record = TokenRecord {
        secret_sha256: sha256_hex(token.secret.as_bytes()),
        cluster,
        created_at,
        expires_at: ttl.map(|t| created_at + t.as_secs() as i64),
        uses_left: uses,
        description,
    };
    let created = etcd
        .put_if_absent(&keys::join_token(&token.id), &serde_json::to_vec(&record)?)
        .await?;
    anyhow::ensure!(created, "a token with id {} exists: try again", token.id);
    Ok((token, record))
}

/// A token's record as read: its id and the record, or why it does not decode.
pub type ListedToken = (String, Result<TokenRecord, String>);

/// `cluster token list`: every token's record (none holds its secret).
pub async fn list_tokens(etcd: &Etcd) -> Result<Vec<ListedToken>, EtcdError> {
    let prefix = keys::join_tokens();
    Ok(etcd
        .get_prefix(&prefix)
        .await?
        .into_iter()
        .map(|kv| {
            let id = kv.key.strip_prefix(&prefix).unwrap_or(&kv.key).to_string();
            let r = serde_json::from_slice(&kv.value).map_err(|e| e.to_string());
            (id, r)
        })
        .collect())
}

/// `cluster token revoke ID`: whether the token existed.
pub async fn revoke_token(etcd: &Etcd, id: &str) -> Result<bool, EtcdError> {
    etcd.delete(&keys::join_token(id)).await
}

/// Checks a request's fields and its proof; the box's public key.
fn check_request(r: &JoinRequest) -> Result<Vec<u8>, Refusal> {
    pki::check_name(&r.name).map_err(|e| refuse(400, e.to_string()))?;
    if r.addresses.len() > MAX_ADDRESSES {
        return Err(refuse(
            400,
            format!("{} addresses: at most {MAX_ADDRESSES}", r.addresses.len()),
        ));
    }
    let point = B64
        .decode(&r.public_key)
        .ok()
        .filter(|p| p.len() == 65 && p[0] == 4)
        .ok_or_else(|| {
            refuse(
                400,
                "public_key: an uncompressed P-256 point (65 bytes), base64",
            )
        })?;
    let proof = B64
        .decode(&r.proof)
        .map_err(|_| refuse(400, "proof: base64 expected"))?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &point)
        .verify(&proof_message(r), &proof)
        .map_err(|_| {
            refuse(
                400,
                "proof: not a signature of this request by public_key's private key",
            )
        })?;
    Ok(point)
}

/// Reads token `id` and checks `secret` against it at `now`: the record and its revision.
async fn check_token(
    etcd: &Etcd,
    id: &str,
    secret: &str,
    now: i64,
) -> Result<(TokenRecord, i64), Refusal> {
    // One message for "no such token" and "wrong secret": a guesser learns nothing.
    let unknown = || refuse(403, "the token is unknown, revoked or used up");
    let kv = etcd
        .get(&keys::join_token(id))
        .await
        .map_err(store_error)?
        .ok_or_else(unknown)?;
    let record: TokenRecord = serde_json::from_slice(&kv.value).map_err(|e| {
        tracing::warn!(token = id, error = %e, "a join token's record does not decode");
        refuse(
            403,
            format!("token {id}'s record in the store does not decode ({e}): create a new token"),
        )
    })?;
    let given = sha2::Sha256::digest(secret.as_bytes());
    let want = hex::decode(&record.secret_sha256).unwrap_or_default();
    if !constant_eq(&want, &given) {
        return Err(unknown());
    }
    if record.uses_left == Some(0) {
        return Err(unknown());
    }
    if let Some(at) = record.expires_at
        && now >= at
    {
        return Err(refuse(403, format!("the token expired {} s ago", now - at)));
    }
    Ok((record, kv.mod_revision))
}

/// Compares two byte strings in time that depends on their length only.
fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// How many times a join reads the token again when a concurrent join took one of its uses.
const TAKE_ATTEMPTS: usize = 64;

/// Takes one use of token `token_key` as read (`record` at `revision`) and box name
/// `box_key` for `joined`, in one transaction: `false` if either changed meanwhile.
async fn take_use(
    etcd: &Etcd,
    token_key: &str,
    box_key: &str,
    record: &TokenRecord,
    revision: i64,
    joined: &JoinedBox,
) -> Result<bool, Refusal> {
    let use_token = match record.uses_left {
        Some(1) => Op::Delete(token_key.to_string()),
        Some(n) => {
            let mut left = record.clone();
            left.uses_left = Some(n - 1);
            Op::Put(
                token_key.to_string(),
                serde_json::to_vec(&left).unwrap_or_default(),
            )
        }
        None => Op::Put(
            token_key.to_string(),
            serde_json::to_vec(record).unwrap_or_default(),
        ),
    };
    etcd.txn(
        &[
            Compare::ModRevision(token_key.to_string(), revision),
            Compare::Absent(box_key.to_string()),
        ],
        &[
            use_token,
            Op::Put(
                box_key.to_string(),
                serde_json::to_vec(joined).unwrap_or_default(),
            ),
        ],
    )
    .await
    .map_err(store_error)
}

/// serve's side of a join: checks the request and the token, takes one of the token's
/// uses and the box's name in one transaction and issues the box's certificate with the
/// CA in `layout`. No etcd user or role: nothing of etcd's auth store changes (issue 76).
pub async fn admit(etcd: &Etcd, layout: &Layout, r: &JoinRequest) -> Result<JoinAnswer, Refusal> {
    let point = check_request(r)?;
    let (record, revision) = check_token(etcd, &r.token_id, &r.secret, now()).await?;
    let taken = || {
        refuse(
            409,
            format!(
                "box {:?} is a member already: join under another name, or remove it first \
                 (`minifargate cluster remove-box {}`)",
                r.name, r.name
            ),
        )
    };
    if layout.box_bundle(&r.name).exists()
        || super::users::user_exists(etcd, &pki::box_user(&r.name))
            .await
            .map_err(store_error)?
    {
        return Err(taken());
    }
    let (_, ca_pem) = pki::layout_ca(layout).map_err(|e| refuse(500, e.to_string()))?;
    let certificate = pki::issue_for_key(layout, &r.name, &point, &r.addresses)
        .map_err(|e| refuse(400, crate::errors::error_chain(&e)))?;
    let der = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(certificate.as_bytes())
            .map_err(|e| refuse(500, format!("the issued certificate: {e}")))?
    };
    let joined = JoinedBox {
        joined_at: now(),
        token: r.token_id.clone(),
        certificate_sha256: sha256_hex(der.as_ref()),
        addresses: r.addresses.clone(),
        cluster: record.cluster.clone(),
    };
    let token_key = keys::join_token(&r.token_id);
    let box_key = keys::joined_box(&r.name);
    let (mut record, mut revision) = (record, revision);
    let mut attempts = 0;
    loop {
        if take_use(etcd, &token_key, &box_key, &record, revision, &joined).await? {
            break;
        }
        // Another join took one of the token's uses meanwhile (a token of several uses,
        // boxes joining at once), or the name was taken: the token read again, unless the
        // name is the cause.
        if let Ok(Some(_)) = etcd.get(&box_key).await {
            return Err(taken());
        }
        attempts += 1;
        if attempts == TAKE_ATTEMPTS {
            return Err(refuse(
                503,
                format!(
                    "the token's record kept changing under {TAKE_ATTEMPTS} attempts to take one \
                     of its uses (boxes joining at once): try again"
                ),
            ));
        }
        (record, revision) = check_token(etcd, &r.token_id, &r.secret, now()).await?;
    }
    let user = pki::box_user(&r.name);
    tracing::info!(
        name = %r.name,
        token = %r.token_id,
        addresses = ?r.addresses,
        "a box joined the cluster with a token"
    );
    Ok(JoinAnswer {
        name: r.name.clone(),
        certificate,
        ca: ca_pem,
        etcd_user: user,
        cluster: record.cluster,
    })
}

/// What serve's port for boxes says of the box whose certificate is `cert` (DER):
/// its name, or a refusal when it has no box role or was removed.
pub async fn whoami(etcd: &Etcd, cert: &[u8]) -> Result<String, Refusal> {
    let name = pki::uri_names(cert)
        .into_iter()
        .find_map(|u| u.strip_prefix(pki::ROLE_BOX).map(str::to_string))
        .ok_or_else(|| refuse(403, "the client certificate is not a box's"))?;
    let sha = sha256_hex(cert);
    if etcd
        .get(&keys::revoked_certificate(&sha))
        .await
        .map_err(store_error)?
        .is_some()
    {
        return Err(refuse(
            403,
            format!(
                "box {name:?} was removed from the cluster (`cluster remove-box`): its \
                 certificate is refused; join again with a new token"
            ),
        ));
    }
    Ok(name)
}

/// `cluster remove-box NAME`: the box's etcd user and role gone, its certificates
/// (the one it joined with, and `offline`'s, a `cluster add-box` bundle's) revoked, its
/// join record deleted. What was done, for the operator.
pub async fn remove_box(
    etcd: &Etcd,
    name: &str,
    offline: Option<&Path>,
) -> anyhow::Result<Vec<String>> {
    pki::check_name(name)?;
    let mut done = Vec::new();
    let mut revoke = Vec::new();
    if let Some(kv) = etcd.get(&keys::joined_box(name)).await? {
        match serde_json::from_slice::<JoinedBox>(&kv.value) {
            Ok(j) => revoke.push(j.certificate_sha256),
            Err(e) => done.push(format!(
                "its join record does not decode ({e}): its certificate's hash is unknown, \
                 only its etcd user is removed"
            )),
        }
    }
    if let Some(cert) = offline.map(|d| d.join("client.crt"))
        && cert.exists()
    {
        use rustls_pki_types::pem::PemObject;
        let pem = std::fs::read(&cert)?;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem)
            .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate: {e}", cert.display()))?;
        revoke.push(sha256_hex(der.as_ref()));
    }
    let record = serde_json::json!({ "name": name, "removed_at": now() }).to_string();
    for sha in &revoke {
        etcd.put(&keys::revoked_certificate(sha), record.as_bytes(), None)
            .await?;
        done.push(format!("certificate sha256:{sha} revoked"));
    }
    if super::users::remove_box(etcd, name).await? {
        done.push(format!(
            "etcd user and role {} removed",
            pki::box_user(name)
        ));
    }
    if etcd.delete(&keys::joined_box(name)).await? {
        done.push("join record deleted".into());
    }
    Ok(done)
}

/// The files of a joined box's bundle (`<root>/agent/bundle`): what `--etcd-certs` reads,
/// plus the control plane's URL.
pub const SERVER_FILE: &str = "server";

/// The box's side of a join: the CA from `server` checked against the token's pin, a new
/// key, the request, and the answer kept in `dir` (made whole in a temporary directory
/// beside it, then renamed: a failed join leaves nothing).
pub async fn enroll(
    server: &str,
    token: &Token,
    name: &str,
    addresses: &[String],
    dir: &Path,
) -> Result<JoinAnswer, JoinError> {
    let base = server.trim_end_matches('/');
    let cacerts = format!("{base}/v1/cacerts");
    let unreachable = |url: &str| {
        let url = url.to_string();
        move |source| JoinError::Unreachable { url, source }
    };
    // Nothing is sent on this connection: what it returns is kept only if it hashes to
    // the pin.
    let blind = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(unreachable(&cacerts))?;
    let ca_pem = blind
        .get(&cacerts)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(unreachable(&cacerts))?
        .text()
        .await
        .map_err(unreachable(&cacerts))?;
    let got = pki::ca_pin(ca_pem.as_bytes()).ok_or_else(|| JoinError::BadAnswer {
        url: cacerts.clone(),
        why: "no PEM certificate".into(),
    })?;
    if got != token.pin {
        return Err(JoinError::PinMismatch {
            url: cacerts,
            got,
            want: token.pin.clone(),
        });
    }
    let url = format!("{base}/v1/join");
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).map_err(unreachable(&url))?;
    let pinned = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(unreachable(&url))?;
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 =
        ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|_| JoinError::Key)?;
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
        .map_err(|_| JoinError::Key)?;
    use ring::signature::KeyPair as _;
    let mut request = JoinRequest {
        token_id: token.id.clone(),
        secret: token.secret.clone(),
        name: name.into(),
        public_key: B64.encode(key.public_key().as_ref()),
        addresses: addresses.to_vec(),
        proof: String::new(),
    };
    let proof = key
        .sign(&rng, &proof_message(&request))
        .map_err(|_| JoinError::Key)?;
    request.proof = B64.encode(proof.as_ref());
    let answer = pinned
        .post(&url)
        .json(&request)
        .send()
        .await
        .map_err(unreachable(&url))?;
    let status = answer.status();
    let body = answer.text().await.map_err(unreachable(&url))?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(body);
        return Err(JoinError::Refused {
            url,
            status: status.as_u16(),
            message,
        });
    }
    let joined: JoinAnswer = serde_json::from_str(&body).map_err(|e| JoinError::BadAnswer {
        url: url.clone(),
        why: e.to_string(),
    })?;
    let key_pem = rcgen::KeyPair::try_from(pkcs8.as_ref())
        .map_err(|_| JoinError::Key)?
        .serialize_pem();
    keep(dir, &joined, &key_pem, base)?;
    Ok(joined)
}

/// The file of a joined box's bundle naming the ECS cluster its token joined it to.
pub const CLUSTER_FILE: &str = "cluster";

/// A joined box's start: asks serve's port for boxes at `server` who the bundle in `dir`
/// is. The box's name; [`JoinError::Refused`] when the control plane refuses the
/// certificate (the box was removed).
pub async fn check_member(server: &str, dir: &Path) -> Result<String, JoinError> {
    let url = format!("{}/v1/box", server.trim_end_matches('/'));
    let read = |f: &str| {
        std::fs::read(dir.join(f)).map_err(|source| JoinError::Write {
            path: dir.join(f),
            source,
        })
    };
    let ca =
        reqwest::Certificate::from_pem(&read("ca.crt")?).map_err(|e| JoinError::BadAnswer {
            url: url.clone(),
            why: format!("the bundle's ca.crt: {e}"),
        })?;
    let mut pem = read("client.crt")?;
    pem.extend(read("client.key")?);
    let identity = reqwest::Identity::from_pem(&pem).map_err(|e| JoinError::BadAnswer {
        url: url.clone(),
        why: format!("the bundle's client.crt and client.key: {e}"),
    })?;
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .identity(identity)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|source| JoinError::Unreachable {
            url: url.clone(),
            source,
        })?;
    let r = client
        .get(&url)
        .send()
        .await
        .map_err(|source| JoinError::Unreachable {
            url: url.clone(),
            source,
        })?;
    let status = r.status();
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    if !status.is_success() {
        return Err(JoinError::Refused {
            url,
            status: status.as_u16(),
            message: v["message"].as_str().unwrap_or_default().to_string(),
        });
    }
    v["name"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| JoinError::BadAnswer {
            url,
            why: "no name".into(),
        })
}

/// Writes a joined box's bundle into `dir`, whole or not at all.
fn keep(dir: &Path, a: &JoinAnswer, key_pem: &str, server: &str) -> Result<(), JoinError> {
    let write = |source| JoinError::Write {
        path: dir.into(),
        source,
    };
    let tmp = dir.with_extension(format!("joining-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let made = || -> Result<(), pki::PkiError> {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|source| pki::PkiError::Write {
                path: parent.into(),
                source,
            })?;
        }
        pki::private_dir(&tmp)?;
        let mut m = pki::Made { files: Vec::new() };
        pki::private_file(&tmp.join("ca.crt"), &a.ca, &mut m)?;
        pki::private_file(&tmp.join("client.crt"), &a.certificate, &mut m)?;
        pki::private_file(&tmp.join("client.key"), key_pem, &mut m)?;
        pki::private_file(
            &tmp.join(pki::USER_FILE),
            &format!("{}\n", a.etcd_user),
            &mut m,
        )?;
        pki::private_file(&tmp.join(SERVER_FILE), &format!("{server}\n"), &mut m)?;
        if let Some(c) = &a.cluster {
            pki::private_file(&tmp.join(CLUSTER_FILE), &format!("{c}\n"), &mut m)?;
        }
        Ok(())
    };
    if let Err(e) = made() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.into());
    }
    std::fs::rename(&tmp, dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        write(e)
    })
}

/// The router of serve's port for boxes: `GET /v1/cacerts` (the CA, for a box to check
/// against its token's pin), `POST /v1/join`, `GET /v1/box` (who the client certificate
/// is, refused when the box was removed).
pub fn router(etcd: &'static Etcd, layout: Layout) -> anyhow::Result<axum::Router> {
    use axum::extract::DefaultBodyLimit;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    let (_, ca_pem) = pki::layout_ca(&layout)?;
    let answer = |r: Result<serde_json::Value, Refusal>| {
        let (status, v) = match r {
            Ok(v) => (StatusCode::OK, v),
            Err(f) => (
                StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                serde_json::json!({ "message": f.message }),
            ),
        };
        (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            v.to_string(),
        )
            .into_response()
    };
    let layout = std::sync::Arc::new(layout);
    Ok(axum::Router::new()
        .route(
            "/v1/cacerts",
            get(move || {
                let pem = ca_pem.clone();
                async move { pem }
            }),
        )
        .route(
            "/v1/join",
            post(move |body: axum::body::Bytes| {
                let layout = layout.clone();
                async move {
                    let r = match serde_json::from_slice::<JoinRequest>(&body) {
                        Ok(req) => admit(etcd, &layout, &req)
                            .await
                            .map(|a| serde_json::to_value(a).unwrap_or_default()),
                        Err(e) => Err(refuse(400, format!("not a join request: {e}"))),
                    };
                    if let Err(f) = &r {
                        tracing::warn!(status = f.status, reason = %f.message, "a join refused");
                    }
                    answer(r)
                }
            }),
        )
        .route(
            "/v1/box",
            get(
                move |peer: Option<axum::Extension<crate::certs::PeerCertificate>>| async move {
                    let r = match peer {
                        Some(axum::Extension(p)) => whoami(etcd, &p.0)
                            .await
                            .map(|name| serde_json::json!({ "name": name })),
                        None => Err(refuse(401, "a box's client certificate is required")),
                    };
                    answer(r)
                },
            ),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY)))
}

/// The client-certificate check of serve's port for boxes: a certificate of the CA in
/// `layout` is taken when offered (a box's, for `/v1/box`), none is needed (a join).
pub fn client_verifier(
    layout: &Layout,
) -> anyhow::Result<std::sync::Arc<dyn tokio_rustls::rustls::server::danger::ClientCertVerifier>> {
    use rustls_pki_types::pem::PemObject;
    let (_, ca_pem) = pki::layout_ca(layout)?;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    Ok(
        tokio_rustls::rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()),
        )
        .allow_unauthenticated()
        .build()?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_prints_and_parses_back_and_nothing_else_parses() {
        let t = Token {
            pin: "ab".repeat(32),
            id: "0123456789ab".into(),
            secret: "f".repeat(32),
        };
        let s = t.to_string();
        assert!(s.starts_with("MF1abab"), "{s}");
        assert_eq!(Token::parse(&s).unwrap(), t);
        assert_eq!(Token::parse(&format!("  {s}\n")).unwrap(), t);
        for bad in [
            "",
            "MF1",
            &s.replace("MF1", "K10"),
            &s.replace("::", ":"),
            &s.replace('.', ":"),
            &s.to_uppercase(),
            &format!("{s}0"),
            &s[..s.len() - 1],
        ] {
            assert!(
                matches!(Token::parse(bad), Err(JoinError::BadToken)),
                "{bad}"
            );
        }
    }

    fn signed(name: &str) -> JoinRequest {
        use ring::signature::KeyPair as _;
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let mut r = JoinRequest {
            token_id: "0123456789ab".into(),
            secret: "f".repeat(32),
            name: name.into(),
            public_key: B64.encode(key.public_key().as_ref()),
            addresses: vec!["10.0.0.5".into()],
            proof: String::new(),
        };
        r.proof = B64.encode(key.sign(&rng, &proof_message(&r)).unwrap().as_ref());
        r
    }

    #[test]
    fn a_request_is_taken_only_with_its_key_s_signature_over_every_field() {
        let r = signed("box-1");
        assert_eq!(check_request(&r).unwrap().len(), 65);
        // Any field changed after signing: the proof no longer holds.
        for change in [
            |r: &mut JoinRequest| r.name = "box-2".into(),
            |r: &mut JoinRequest| r.token_id = "ffffffffffff".into(),
            |r: &mut JoinRequest| r.secret = "e".repeat(32),
            |r: &mut JoinRequest| r.addresses.push("10.0.0.6".into()),
            |r: &mut JoinRequest| r.public_key = signed("box-1").public_key,
        ] {
            let mut bad = r.clone();
            change(&mut bad);
            let f = check_request(&bad).unwrap_err();
            assert_eq!(f.status, 400, "{f:?}");
            assert!(f.message.starts_with("proof:"), "{f:?}");
        }
        let mut bad = signed("../etc");
        assert!(
            check_request(&bad)
                .unwrap_err()
                .message
                .contains("box name")
        );
        bad = signed("box-1");
        bad.public_key = B64.encode([4u8; 10]);
        assert!(
            check_request(&bad)
                .unwrap_err()
                .message
                .starts_with("public_key")
        );
        bad = signed("box-1");
        bad.addresses = vec!["10.0.0.1".into(); 17];
        assert!(
            check_request(&bad)
                .unwrap_err()
                .message
                .contains("at most 16")
        );
    }

    #[test]
    fn a_certificate_issued_for_a_box_s_key_names_the_box_and_chains_to_the_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout {
            dir: tmp.path().join("cluster"),
        };
        pki::init(&layout, &[]).unwrap();
        let r = signed("edge-7");
        let point = check_request(&r).unwrap();
        let pem = pki::issue_for_key(&layout, "edge-7", &point, &r.addresses).unwrap();
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(pki::uri_names(&der), ["urn:minifargate:box:edge-7"]);
        let (pin, ca_pem) = pki::layout_ca(&layout).unwrap();
        assert_eq!(pin.len(), 64);
        let ca = rustls_pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap();
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let verifier = tokio_rustls::rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        verifier
            .verify_client_cert(&der, &[], rustls_pki_types::UnixTime::now())
            .expect("the joined box's certificate is the cluster's");
        // The control plane's own certificate for boxes carries no role: it opens no
        // agent's endpoint.
        let (cp, _) = pki::control_plane_identity(&layout, &["cp.lab".into()]).unwrap();
        let cp = rustls_pki_types::CertificateDer::from_pem_slice(cp.as_bytes()).unwrap();
        assert!(pki::uri_names(&cp).is_empty());
    }

    #[test]
    fn the_constant_time_comparison_compares() {
        assert!(constant_eq(b"abc", b"abc"));
        assert!(!constant_eq(b"abc", b"abd"));
        assert!(!constant_eq(b"abc", b"ab"));
    }
}
