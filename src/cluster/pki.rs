//! The cluster's certificates (docs/cluster.md "Security"): `cluster init` makes a CA,
//! etcd's server and peer certificates and client certificates for serve and the operator;
//! `cluster add-box` one box's client certificate, named for the box. Every file is
//! root-only (directories 0700, files 0600); the CA's key never leaves the machine that
//! made it.
//!
//! Each client's bundle is a directory of `ca.crt`, `client.crt` and `client.key`, which
//! `--etcd-certs DIR` reads (`src/cli/agent.rs`). Keys are ECDSA P-256 (rcgen's default,
//! ring underneath as for the rest of the TLS in the binary).

use rcgen::{DnType, ExtendedKeyUsagePurpose, KeyPair, SerialNumber};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the CA and the certificates it signs are valid (no rotation yet: a box's
/// certificate is issued again with `cluster add-box`).
const VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Serve's etcd user (role `root`: serve is the control plane).
pub const SERVE_USER: &str = "minifargate-serve";
/// The operator's etcd user (etcdctl, `exec --etcd`, `logs --etcd`).
pub const ADMIN_USER: &str = "root";

/// Box `name`'s etcd user (and its role).
pub fn box_user(name: &str) -> String {
    format!("minifargate-box-{name}")
}

/// The role a client certificate carries (a URI in its subject alternative names): what
/// an agent's endpoint lets call it (docs/cluster.md "Between boxes"). Serve's and the
/// operator's may; a box's (`urn:minifargate:box:NAME`) and one without a role may not.
pub const ROLE_SERVE: &str = "urn:minifargate:role:serve";
pub const ROLE_OPERATOR: &str = "urn:minifargate:role:operator";
/// The prefix of a box's certificate's role, followed by its name.
pub const ROLE_BOX: &str = "urn:minifargate:box:";

/// The file of a bundle naming its etcd user.
pub const USER_FILE: &str = "etcd-user";
/// The file of a bundle holding its etcd user's password.
pub const PASSWORD_FILE: &str = "etcd-password";

/// What went wrong making or issuing the cluster's certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(
        "{0} exists: this directory already holds a cluster's CA (remove it to start a new \
         cluster, or use `cluster add-box` to issue a box's certificate from it)"
    )]
    CaExists(PathBuf),
    #[error(
        "{0} exists: box {1:?} already has a certificate (remove that directory to issue a new one)"
    )]
    BoxExists(PathBuf, String),
    #[error("failed to read {path} (made by `minifargate cluster init`?)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to make {what}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("{0}: not the key of a CA made by `minifargate cluster init`")]
    BadCaKey(PathBuf),
    #[error(
        "box name {0:?}: 1 to 63 letters, digits, hyphens, underscores or periods (it becomes \
         its etcd user's and role's name)"
    )]
    BadName(String),
    #[error("host {0:?}: an IP address or a DNS name etcd is reached at")]
    BadHost(String),
}

/// The files of a cluster's directory (`cluster init --dir`).
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    /// The key of the CA of etcd's peers (its certificate is `etcd/peer-ca.crt`): a CA of
    /// its own, so that no client certificate of the cluster — a box's least of all — is
    /// a peer's. Kept beside `ca.key`, not in `etcd/`, which is copied to the members.
    pub fn peer_ca_key(&self) -> PathBuf {
        self.dir.join("peer-ca.key")
    }
    /// etcd's own certificates: `server.crt/.key` (clients and etcd's gateway) and
    /// `peer.crt/.key` (between members).
    pub fn etcd(&self) -> PathBuf {
        self.dir.join("etcd")
    }
    /// Serve's client bundle.
    pub fn serve(&self) -> PathBuf {
        self.dir.join("serve")
    }
    /// The operator's client bundle (etcdctl; `exec --etcd`, `logs --etcd`).
    pub fn admin(&self) -> PathBuf {
        self.dir.join("admin")
    }
    /// Box `name`'s client bundle, to copy to the box.
    pub fn box_bundle(&self, name: &str) -> PathBuf {
        self.dir.join("boxes").join(name)
    }
}

/// What `init` made, for the operator.
#[derive(Debug)]
pub struct Made {
    pub files: Vec<PathBuf>,
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    crate::certs::random_serial().map_err(|e| PkiError::Write {
        path: "/dev/urandom".into(),
        source: e,
    })
}

fn generate(what: &str) -> impl Fn(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Generate {
        what: what.to_string(),
        source,
    }
}

/// The CA, loaded from its key.
struct Ca {
    key: KeyPair,
    cert: rcgen::Certificate,
}

impl Ca {
    fn load(layout: &Layout) -> Result<Ca, PkiError> {
        let path = layout.ca_key();
        let pem = std::fs::read_to_string(&path).map_err(|source| PkiError::Read {
            path: path.clone(),
            source,
        })?;
        let key = KeyPair::from_pem(&pem).map_err(|_| PkiError::BadCaKey(path.clone()))?;
        let cert = crate::certs::ca_params(&key, "cluster", VALIDITY)
            .self_signed(&key)
            .map_err(generate("the CA"))?;
        Ok(Ca { key, cert })
    }

    /// A leaf certificate and its key (PEM) for `who`, with common name `cn` when given,
    /// `sans` (IP addresses or DNS names), `role` (a URI name, [`ROLE_SERVE`] …), for a TLS server and client (`server`) or a
    /// client only. A client of etcd's JSON gateway has no common name: with etcd's
    /// authentication on, the gateway refuses a certificate that has one (its etcd user
    /// is a password user instead, docs/cluster.md "Security").
    fn issue(
        &self,
        who: &str,
        cn: Option<&str>,
        sans: &[String],
        role: Option<&str>,
        server: bool,
    ) -> Result<(String, String), PkiError> {
        let what = format!("the certificate of {who}");
        let mut p = crate::certs::leaf_params(sans.to_vec(), random_serial()?, VALIDITY)
            .map_err(generate(&what))?;
        if let Some(role) = role {
            let uri = role.try_into().map_err(generate(&what))?;
            p.subject_alt_names.push(rcgen::SanType::URI(uri));
        }
        if let Some(cn) = cn {
            p.distinguished_name.push(DnType::CommonName, cn);
        }
        // etcd 3.4's JSON gateway dials etcd's gRPC with the server's own certificate:
        // a server certificate must be a client one too (docs/cluster.md "Security").
        p.extended_key_usages = if server {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        let key = KeyPair::generate().map_err(generate(&what))?;
        let cert = p
            .signed_by(&key, &self.cert, &self.key)
            .map_err(generate(&what))?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// A root-only directory (0700), with its parents.
pub fn private_dir(path: &Path) -> Result<(), PkiError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        })
        .map_err(|source| PkiError::Write {
            path: path.into(),
            source,
        })
}

/// A new root-only file (0600); never over an existing one.
pub fn private_file(path: &Path, content: &str, made: &mut Made) -> Result<(), PkiError> {
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()
    };
    write().map_err(|source| PkiError::Write {
        path: path.into(),
        source,
    })?;
    made.files.push(path.into());
    Ok(())
}

/// A client bundle in `dir`: the CA's certificate, a client certificate and key, etcd
/// user `user` and a new password of its own.
fn bundle(
    ca: &Ca,
    ca_pem: &str,
    dir: &Path,
    user: &str,
    role: &str,
    made: &mut Made,
) -> Result<(), PkiError> {
    bundle_for(ca, ca_pem, dir, user, role, None, made)
}

/// A new password: 32 random bytes, hex.
fn password() -> Result<String, PkiError> {
    let mut b = [0u8; 32];
    crate::task::fill_random(&mut b).map_err(|e| PkiError::Write {
        path: "/dev/urandom".into(),
        source: e,
    })?;
    Ok(hex::encode(b))
}

/// The etcd user and password of the bundle in `dir`.
pub fn credentials(dir: &Path) -> Result<(String, String), PkiError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_string())
            .map_err(|source| PkiError::Read { path, source })
    };
    Ok((read(USER_FILE)?, read(PASSWORD_FILE)?))
}

/// A bundle whose certificate is also a server's for `server` (its names), as a box's is:
/// its agent's endpoint serves TLS with it.
fn bundle_for(
    ca: &Ca,
    ca_pem: &str,
    dir: &Path,
    user: &str,
    role: &str,
    server: Option<&[String]>,
    made: &mut Made,
) -> Result<(), PkiError> {
    private_dir(dir)?;
    let (cert, key) = ca.issue(
        user,
        None,
        server.unwrap_or_default(),
        Some(role),
        server.is_some(),
    )?;
    private_file(&dir.join("ca.crt"), ca_pem, made)?;
    private_file(&dir.join("client.crt"), &cert, made)?;
    private_file(&dir.join("client.key"), &key, made)?;
    private_file(&dir.join(USER_FILE), &format!("{user}\n"), made)?;
    private_file(
        &dir.join(PASSWORD_FILE),
        &format!("{}\n", password()?),
        made,
    )
}

/// Checks an etcd host name for a certificate's subject alternative names.
fn check_host(h: &str) -> Result<String, PkiError> {
    let ok = h.parse::<std::net::IpAddr>().is_ok()
        || (!h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }));
    if ok {
        Ok(h.to_string())
    } else {
        Err(PkiError::BadHost(h.into()))
    }
}

/// `cluster init`: the CA, etcd's server certificate, the peers' own CA and their
/// certificate (valid for loopback and `hosts`), serve's and the operator's client
/// bundles, in `layout.dir`.
pub fn init(layout: &Layout, hosts: &[String]) -> Result<Made, PkiError> {
    let sans = names_with_loopback(hosts)?;
    if layout.ca_key().exists() {
        return Err(PkiError::CaExists(layout.ca_key()));
    }
    private_dir(&layout.dir)?;
    let mut made = Made { files: Vec::new() };
    let key = KeyPair::generate().map_err(generate("the CA's key"))?;
    let mut params = crate::certs::ca_params(&key, "cluster", VALIDITY);
    params.serial_number = Some(random_serial()?);
    let cert = params.self_signed(&key).map_err(generate("the CA"))?;
    let ca_pem = cert.pem();
    private_file(&layout.ca_key(), &key.serialize_pem(), &mut made)?;
    private_file(&layout.ca_cert(), &ca_pem, &mut made)?;
    let ca = Ca { key, cert };
    let etcd = layout.etcd();
    private_dir(&etcd)?;
    // Peers have a CA of their own: etcd's peer port (`--peer-trusted-ca-file`) then
    // takes no certificate of the cluster's CA, which signs every box's.
    let peer_key = KeyPair::generate().map_err(generate("the peers' CA's key"))?;
    let mut params = crate::certs::ca_params(&peer_key, "etcd peers", VALIDITY);
    params.serial_number = Some(random_serial()?);
    let peer_cert = params
        .self_signed(&peer_key)
        .map_err(generate("the peers' CA"))?;
    private_file(&layout.peer_ca_key(), &peer_key.serialize_pem(), &mut made)?;
    private_file(&etcd.join("peer-ca.crt"), &peer_cert.pem(), &mut made)?;
    let peers = Ca {
        key: peer_key,
        cert: peer_cert,
    };
    for (name, by) in [("server", &ca), ("peer", &peers)] {
        let cn = format!("minifargate-etcd-{name}");
        let (cert, key) = by.issue(&cn, Some(&cn), &sans, None, true)?;
        private_file(&etcd.join(format!("{name}.crt")), &cert, &mut made)?;
        private_file(&etcd.join(format!("{name}.key")), &key, &mut made)?;
    }
    private_file(&etcd.join("ca.crt"), &ca_pem, &mut made)?;
    bundle(
        &ca,
        &ca_pem,
        &layout.serve(),
        SERVE_USER,
        ROLE_SERVE,
        &mut made,
    )?;
    bundle(
        &ca,
        &ca_pem,
        &layout.admin(),
        ADMIN_USER,
        ROLE_OPERATOR,
        &mut made,
    )?;
    Ok(made)
}

/// Checks a box's name: it becomes its etcd user's and role's name, a directory's and a
/// key's part.
pub fn check_name(name: &str) -> Result<(), PkiError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err(PkiError::BadName(name.into()))
    }
}

/// Loopback's names and `hosts` (checked), without repeats: a certificate's names.
fn names_with_loopback(hosts: &[String]) -> Result<Vec<String>, PkiError> {
    let mut sans = vec!["127.0.0.1".to_string(), "::1".into(), "localhost".into()];
    for h in hosts {
        let h = check_host(h)?;
        if !sans.contains(&h) {
            sans.push(h);
        }
    }
    Ok(sans)
}

/// The pin of a CA: the SHA-256 of its certificate's DER, 64 hex digits (what a join
/// token carries, as k3s's `K10<hash>` does).
pub fn ca_pin(ca_pem: &[u8]) -> Option<String> {
    use rustls_pki_types::pem::PemObject;
    use sha2::Digest as _;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(ca_pem).ok()?;
    Some(hex::encode(sha2::Sha256::digest(der.as_ref())))
}

/// The pin of the CA in `layout.dir`, and its PEM.
pub fn layout_ca(layout: &Layout) -> Result<(String, String), PkiError> {
    let path = layout.ca_cert();
    let pem = std::fs::read_to_string(&path).map_err(|source| PkiError::Read {
        path: path.clone(),
        source,
    })?;
    let pin = ca_pin(pem.as_bytes()).ok_or_else(|| PkiError::BadCaKey(path.clone()))?;
    Ok((pin, pem))
}

/// A box's public key as its join request carries it: an uncompressed P-256 point.
struct P256Point<'a>(&'a [u8]);

impl rcgen::PublicKeyData for P256Point<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }
    fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// A joining box's certificate (PEM) for its own key `point` (an uncompressed P-256
/// point, 65 bytes; the key never leaves the box), issued by the CA in `layout.dir` as
/// `cluster add-box` issues one: role `urn:minifargate:box:NAME`, for a TLS server (its
/// agent's endpoint, valid for loopback and `addresses`) and client.
pub fn issue_for_key(
    layout: &Layout,
    name: &str,
    point: &[u8],
    addresses: &[String],
) -> Result<String, PkiError> {
    check_name(name)?;
    let sans = names_with_loopback(addresses)?;
    let ca = Ca::load(layout)?;
    let what = format!("the certificate of box {name}");
    let mut p =
        crate::certs::leaf_params(sans, random_serial()?, VALIDITY).map_err(generate(&what))?;
    let uri = format!("{ROLE_BOX}{name}")
        .try_into()
        .map_err(generate(&what))?;
    p.subject_alt_names.push(rcgen::SanType::URI(uri));
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = p
        .signed_by(&P256Point(point), &ca.cert, &ca.key)
        .map_err(generate(&what))?;
    Ok(cert.pem())
}

/// The certificate and key (PEM) of serve's port for boxes (`serve --boxes-listen`),
/// issued at each start by the CA in `layout.dir` for loopback and `names` (the names
/// and addresses boxes reach it at): a server's only, with no role, so it opens no
/// agent's endpoint.
pub fn control_plane_identity(
    layout: &Layout,
    names: &[String],
) -> Result<(String, String), PkiError> {
    let sans = names_with_loopback(names)?;
    let ca = Ca::load(layout)?;
    let what = "the certificate of serve's port for boxes";
    let mut p =
        crate::certs::leaf_params(sans, random_serial()?, VALIDITY).map_err(generate(what))?;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(generate(what))?;
    let cert = p
        .signed_by(&key, &ca.cert, &ca.key)
        .map_err(generate(what))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// `cluster add-box NAME`: box `name`'s bundle, issued by the CA in `layout.dir`: its
/// certificate is etcd's client certificate and its agent's endpoint's server certificate,
/// valid for loopback and `addresses` (the box's addresses on the boxes' network).
pub fn add_box(layout: &Layout, name: &str, addresses: &[String]) -> Result<Made, PkiError> {
    let sans = names_with_loopback(addresses)?;
    check_name(name)?;
    let ca = Ca::load(layout)?;
    let ca_pem = std::fs::read_to_string(layout.ca_cert()).map_err(|source| PkiError::Read {
        path: layout.ca_cert(),
        source,
    })?;
    let dir = layout.box_bundle(name);
    if dir.exists() {
        return Err(PkiError::BoxExists(dir, name.into()));
    }
    let mut made = Made { files: Vec::new() };
    private_dir(&dir.with_file_name(""))?;
    bundle_for(
        &ca,
        &ca_pem,
        &dir,
        &box_user(name),
        &format!("{ROLE_BOX}{name}"),
        Some(&sans),
        &mut made,
    )?;
    Ok(made)
}

/// One DER element: its tag, its content and what follows it.
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |l, &d| (l << 8) | d as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The URI names (subject alternative names) of DER certificate `cert`: where a
/// certificate of the cluster carries its role. Empty if it has none or does not parse.
pub fn uri_names(cert: &[u8]) -> Vec<String> {
    let walk = || -> Option<Vec<String>> {
        let (_, certificate, _) = der(cert)?;
        let (_, mut tbs, _) = der(certificate)?;
        // tbsCertificate's fields up to [3] extensions.
        let mut extensions = None;
        while !tbs.is_empty() {
            let (tag, content, rest) = der(tbs)?;
            if tag == 0xa3 {
                extensions = Some(der(content)?.1);
            }
            tbs = rest;
        }
        let mut exts = extensions?;
        let mut uris = Vec::new();
        while !exts.is_empty() {
            let (_, mut ext, rest) = der(exts)?;
            exts = rest;
            let (_, oid, after) = der(ext)?;
            // subjectAltName, 2.5.29.17.
            if oid != [0x55, 0x1d, 0x11] {
                continue;
            }
            ext = after;
            let mut value = None;
            while !ext.is_empty() {
                let (tag, content, rest) = der(ext)?;
                if tag == 0x04 {
                    value = Some(content);
                }
                ext = rest;
            }
            let (_, mut names, _) = der(value?)?;
            while !names.is_empty() {
                let (tag, content, rest) = der(names)?;
                // uniformResourceIdentifier [6] IA5String.
                if tag == 0x86 {
                    uris.push(String::from_utf8_lossy(content).into_owned());
                }
                names = rest;
            }
        }
        Some(uris)
    };
    walk().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn init_makes_root_only_files_and_a_box_is_issued_by_the_same_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout {
            dir: tmp.path().join("cluster"),
        };
        let made = init(&layout, &["10.0.0.1".into(), "etcd.lab".into()]).unwrap();
        assert!(made.files.len() >= 12, "{made:?}");
        for f in &made.files {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        assert_eq!(mode(&layout.dir), 0o700);
        assert!(matches!(init(&layout, &[]), Err(PkiError::CaExists(_))));
        let b = add_box(&layout, "box-1", &[]).unwrap();
        assert_eq!(b.files.len(), 5);
        let (user, pw) = credentials(&layout.box_bundle("box-1")).unwrap();
        assert_eq!(user, "minifargate-box-box-1");
        assert_eq!(pw.len(), 64);
        assert_ne!(credentials(&layout.serve()).unwrap().1, pw);
        assert_eq!(mode(&layout.box_bundle("box-1")), 0o700);
        assert!(matches!(
            add_box(&layout, "box-1", &[]),
            Err(PkiError::BoxExists(..))
        ));
        assert!(matches!(
            add_box(&layout, "../x", &[]),
            Err(PkiError::BadName(_))
        ));
        assert!(matches!(
            init(&layout, &["a b".into()]),
            Err(PkiError::BadHost(_))
        ));

        // The box's certificate chains to the CA made by init (issuer and key id match):
        // rustls, as etcd's clients use it, accepts the pair.
        let ca_pem = std::fs::read(layout.ca_cert()).unwrap();
        let ca = rustls_pki_types::CertificateDer::from_pem_slice(&ca_pem).unwrap();
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let leaf_pem = std::fs::read(layout.box_bundle("box-1").join("client.crt")).unwrap();
        let leaf = rustls_pki_types::CertificateDer::from_pem_slice(&leaf_pem).unwrap();
        let verifier = tokio_rustls::rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        verifier
            .verify_client_cert(&leaf, &[], rustls_pki_types::UnixTime::now())
            .expect("the box's certificate is trusted by the cluster's CA");
        // etcd's peer port trusts the peers' CA alone: the peer certificate chains to it,
        // a box's (or serve's) certificate does not, nor the peer certificate to the CA
        // every client certificate comes from.
        let verifier_of = |ca: PathBuf| {
            let pem = std::fs::read(ca).unwrap();
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            roots
                .add(rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap())
                .unwrap();
            tokio_rustls::rustls::server::WebPkiClientVerifier::builder_with_provider(
                std::sync::Arc::new(roots),
                std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()),
            )
            .build()
            .unwrap()
        };
        let cert = |p: PathBuf| {
            let pem = std::fs::read(p).unwrap();
            rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap()
        };
        let now = rustls_pki_types::UnixTime::now();
        let peers = verifier_of(layout.etcd().join("peer-ca.crt"));
        peers
            .verify_client_cert(&cert(layout.etcd().join("peer.crt")), &[], now)
            .expect("the peer certificate is the peers' CA's");
        for c in [
            layout.box_bundle("box-1").join("client.crt"),
            layout.serve().join("client.crt"),
            layout.etcd().join("server.crt"),
        ] {
            assert!(
                peers
                    .verify_client_cert(&cert(c.clone()), &[], now)
                    .is_err(),
                "{} is taken by etcd's peer port",
                c.display()
            );
        }
        assert!(
            verifier_of(layout.ca_cert())
                .verify_client_cert(&cert(layout.etcd().join("peer.crt")), &[], now)
                .is_err()
        );
        assert_eq!(mode(&layout.peer_ca_key()), 0o600);
        assert!(!layout.etcd().join("peer-ca.key").exists());
        // Each client certificate names its role; etcd's own certificates none.
        let uris = |p: PathBuf| {
            let pem = std::fs::read(p).unwrap();
            uri_names(&rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap())
        };
        assert_eq!(uris(layout.serve().join("client.crt")), [ROLE_SERVE]);
        assert_eq!(uris(layout.admin().join("client.crt")), [ROLE_OPERATOR]);
        assert_eq!(
            uris(layout.box_bundle("box-1").join("client.crt")),
            ["urn:minifargate:box:box-1"]
        );
        assert!(uris(layout.etcd().join("server.crt")).is_empty());
        assert!(uri_names(b"not a certificate").is_empty());
    }
}
