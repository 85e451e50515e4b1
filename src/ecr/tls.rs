//! HTTPS for the registry: a local CA (`<root>/registry/tls/ca.crt`, its key 0600) made on
//! serve's first start and kept, and a server certificate it signs at every start for the
//! registry's names (the ECR host name, localhost, the loopback and listen addresses,
//! serve's allowed host names); and the per-registry trust podman, skopeo and buildah
//! read (`<certs.d>/<host:port>/ca.crt`), written for the addresses serve listens on and
//! removed when it stops. ECR is HTTPS-only; this is what lets `podman login`/`push` and
//! `skopeo copy` work with no `--tls-verify=false`. Ref: containers-certs.d(5).

use rcgen::{DnType, ExtendedKeyUsagePurpose, KeyPair, SanType};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The CA's validity (kept across starts: clients trust this file).
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86400);
/// A server certificate's (made again at every start): 397 days, the most browsers and
/// Apple's clients accept.
const CERT_VALIDITY: Duration = Duration::from_secs(397 * 86400);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to read {path}")]
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
    #[error(
        "{0} is not a PEM private key of the registry's CA (remove the tls directory to make a new CA; clients must then trust the new ca.crt)"
    )]
    BadCaKey(PathBuf),
    #[error("failed to generate {what}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
}

/// The registry's certificate files under `<root>/registry/tls/`.
#[derive(Debug, Clone)]
pub struct Files {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn generate(what: &'static str) -> impl Fn(rcgen::Error) -> TlsError {
    move |source| TlsError::Generate { what, source }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let w = || -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    w().map_err(|source| TlsError::Write {
        path: path.into(),
        source,
    })
}

/// Makes (or keeps) the CA under `dir` and signs a new server certificate for `dns` and
/// `ips`. Returns the files.
pub fn prepare(dir: &Path, dns: &[String], ips: &[IpAddr]) -> Result<Files, TlsError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| TlsError::Write {
            path: dir.into(),
            source,
        })?;
    let files = Files {
        ca_cert: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    };
    let ca_key_path = dir.join("ca.key");
    let ca_key = match std::fs::read_to_string(&ca_key_path) {
        Ok(pem) => KeyPair::from_pem(&pem).map_err(|_| TlsError::BadCaKey(ca_key_path.clone()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let k = KeyPair::generate().map_err(generate("the registry's CA key"))?;
            write_file(&ca_key_path, k.serialize_pem().as_bytes(), 0o600)?;
            let _ = std::fs::remove_file(&files.ca_cert);
            k
        }
        Err(source) => {
            return Err(TlsError::Read {
                path: ca_key_path,
                source,
            });
        }
    };
    let ca = crate::certs::ca_params(&ca_key, "registry", CA_VALIDITY)
        .self_signed(&ca_key)
        .map_err(generate("the registry's CA certificate"))?;
    if !files.ca_cert.exists() {
        write_file(&files.ca_cert, ca.pem().as_bytes(), 0o644)?;
    }
    let serial = crate::certs::random_serial().expect("the kernel's random numbers");
    let mut p = crate::certs::leaf_params(Vec::new(), serial, CERT_VALIDITY)
        .map_err(generate("the registry's certificate"))?;
    p.distinguished_name
        .push(DnType::CommonName, dns.first().cloned().unwrap_or_default());
    for d in dns {
        let name = d
            .clone()
            .try_into()
            .map_err(generate("the registry's certificate (a DNS name)"))?;
        p.subject_alt_names.push(SanType::DnsName(name));
    }
    for ip in ips {
        p.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(generate("the registry's server key"))?;
    let cert = p
        .signed_by(&key, &ca, &ca_key)
        .map_err(generate("the registry's server certificate"))?;
    write_file(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&files.cert, cert.pem().as_bytes(), 0o644)?;
    Ok(files)
}

/// The trust written for podman, skopeo and buildah (`/etc/containers/certs.d/<host>`,
/// `host:port` or a name for port 443) and Docker (`/etc/docker/certs.d/<host>`): `ca.crt`
/// in each directory given; removed on drop (serve stopping). An entry a user made (a
/// directory that existed with another ca.crt) is left alone.
pub struct Trust {
    written: Vec<PathBuf>,
}

impl Trust {
    /// `ca_pem` as `<dir>/ca.crt` for each of `dirs` (`<certs.d>/<host>`).
    pub fn install(dirs: &[PathBuf], ca_pem: &[u8]) -> Result<Trust, TlsError> {
        let mut written = Vec::new();
        for dir in dirs {
            let file = dir.join("ca.crt");
            if let Ok(existing) = std::fs::read(&file)
                && existing != ca_pem
            {
                tracing::warn!(path = %file.display(), "a CA of another registry is already trusted for this address; left as it is");
                continue;
            }
            let made = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|source| TlsError::Write {
                    path: dir.clone(),
                    source,
                })
                .and_then(|()| write_file(&file, ca_pem, 0o644));
            if let Err(e) = made {
                // What this call wrote goes: nothing half-made stays.
                drop(Trust { written });
                return Err(e);
            }
            written.push(file);
        }
        Ok(Trust { written })
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.written
    }
}

impl Drop for Trust {
    fn drop(&mut self) {
        for f in &self.written {
            if let Err(e) = std::fs::remove_file(f)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %f.display(), error = %e, "failed to remove the registry's trust entry");
            }
            if let Some(d) = f.parent() {
                // Only if empty (a user's client certificates stay).
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_kept_and_signs_a_certificate_for_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec![
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com".to_string(),
            "localhost".into(),
        ];
        let ips = vec![IpAddr::from([127, 0, 0, 1])];
        let f = prepare(dir.path(), &names, &ips).unwrap();
        let ca1 = std::fs::read(&f.ca_cert).unwrap();
        let cert1 = std::fs::read(&f.cert).unwrap();
        let f = prepare(dir.path(), &names, &ips).unwrap();
        assert_eq!(std::fs::read(&f.ca_cert).unwrap(), ca1, "the CA stays");
        assert_ne!(
            std::fs::read(&f.cert).unwrap(),
            cert1,
            "a new server certificate"
        );
        use std::os::unix::fs::PermissionsExt;
        for (p, mode) in [(dir.path().join("ca.key"), 0o600), (f.key.clone(), 0o600)] {
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                mode
            );
        }

        let certs = dir.path().join("certs.d");
        let dirs = vec![certs.join("127.0.0.1:5999"), certs.join("localhost:5999")];
        let t = Trust::install(&dirs, &ca1).unwrap();
        assert_eq!(
            std::fs::read(certs.join("127.0.0.1:5999/ca.crt")).unwrap(),
            ca1
        );
        assert_eq!(t.files().len(), 2);
        drop(t);
        assert!(!certs.join("127.0.0.1:5999").exists());
    }
}
