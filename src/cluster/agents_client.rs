//! How serve and the CLI reach an agent's endpoint: an HTTP client and a TLS connector
//! that trust the cluster's CA only and present the caller's own certificate, its etcd
//! client certificate (`--etcd-cert`: serve's or the operator's bundle, whose role the
//! endpoint checks, [`super::endpoint::callers`]).

use super::etcd::{Etcd, EtcdError};
use std::time::Duration;

fn read(path: &std::path::Path) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|e| EtcdError::Tls {
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

/// The cluster's CA, read from `etcd`'s `--etcd-cacert`: the only root an agent's
/// `https://` endpoint is checked against (docs/cluster.md "Security").
fn cluster_ca(etcd: &Etcd) -> Result<Option<(std::path::PathBuf, Vec<u8>)>, EtcdError> {
    let Some(ca) = etcd.ca() else {
        return Ok(None);
    };
    let pem = std::fs::read(ca).map_err(|e| EtcdError::Tls {
        path: ca.display().to_string(),
        why: e.to_string(),
    })?;
    Ok(Some((ca.to_path_buf(), pem)))
}

/// An HTTP client for agents' endpoints: straight to the box (no proxy), a 2 s connect
/// deadline, `total` for the whole call if given, and for `https://` endpoints the
/// cluster's CA as its only root (no public CA vouches for a box) and this client's
/// certificate.
pub fn agents_http(etcd: &Etcd, total: Option<Duration>) -> Result<reqwest::Client, EtcdError> {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(2));
    if let Some(t) = total {
        b = b.timeout(t);
    }
    if let Some((path, pem)) = cluster_ca(etcd)? {
        b = b.tls_built_in_root_certs(false);
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| EtcdError::Tls {
            path: path.display().to_string(),
            why: e.to_string(),
        })? {
            b = b.add_root_certificate(cert);
        }
        if let Some((cert, key)) = etcd.identity() {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| EtcdError::Tls {
                path: format!("{} with {}", cert.display(), key.display()),
                why: e.to_string(),
            })?;
            b = b.identity(id);
        }
    }
    b.build().map_err(|e| EtcdError::Tls {
        path: "the agents' TLS configuration".into(),
        why: e.to_string(),
    })
}

/// A TLS connector for agents' `https://` endpoints that trusts the cluster's CA only and
/// presents this client's certificate (`exec`'s stream, which is not an HTTP client's);
/// `None` without a CA.
pub fn agents_tls(etcd: &Etcd) -> Result<Option<tokio_rustls::TlsConnector>, EtcdError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let Some((path, pem)) = cluster_ca(etcd)? else {
        return Ok(None);
    };
    let bad = |why: String| EtcdError::Tls {
        path: path.display().to_string(),
        why,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots);
    let config = match etcd.identity() {
        Some((cert, key)) => {
            use rustls_pki_types::PrivateKeyDer;
            let bad = |why: String| EtcdError::Tls {
                path: format!("{} with {}", cert.display(), key.display()),
                why,
            };
            let chain = CertificateDer::pem_slice_iter(&read(cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            let key = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| bad(e.to_string()))?;
            config
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(e.to_string()))?
        }
        None => config.with_no_client_auth(),
    };
    Ok(Some(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    ))))
}
