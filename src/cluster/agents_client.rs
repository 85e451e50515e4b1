//! How serve and the CLI reach an agent's endpoint, one way for every caller (logs,
//! metrics samples, the console's views, exec): [`connect`], directly or through the
//! tunnel a joined box dialed out ([`super::tunnel`]), with TLS that trusts the cluster's
//! CA only and presents the caller's own certificate, its etcd client certificate
//! (`--etcd-cert`: serve's or the operator's bundle, whose role the endpoint checks,
//! [`super::endpoint::callers`]); then one HTTP request ([`call`]) or an upgrade
//! ([`upgrade`], exec's stream).

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

/// A connection to an agent's endpoint, ready for HTTP: TCP, TLS over TCP, or TLS over a
/// tunnel the box dialed ([`connect`]).
pub type Stream = Box<dyn Io>;

/// What a connection to an agent is.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

use std::io::{Error, ErrorKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a TCP connection to an agent (or to the serve holding its tunnel) may take.
const CONNECT: Duration = Duration::from_secs(2);
/// How long a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// `tls` over `io`, checking the server as `name` (an IP address or a DNS name).
pub async fn tls_over<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    tls: &tokio_rustls::TlsConnector,
    name: &str,
    io: S,
) -> std::io::Result<Stream> {
    let name = rustls_pki_types::ServerName::try_from(
        name.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("{name}: {e}")))?;
    let s = tokio::time::timeout(HANDSHAKE, tls.connect(name, io))
        .await
        .map_err(|_| Error::new(ErrorKind::TimedOut, "no TLS handshake within 5 s"))??;
    Ok(Box::new(s))
}

/// A TCP connection to `addr` (`HOST:PORT`) within 2 s, without Nagle's delay (an exec's
/// small frames go at once).
pub async fn tcp(addr: &str) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::time::timeout(CONNECT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::TimedOut,
                format!("{addr}: no connection within 2 s"),
            )
        })??;
    s.set_nodelay(true)?;
    Ok(s)
}

/// What an upgrade request was answered with.
pub enum Upgrade {
    /// 101: the stream, and what was read past the answer's head.
    Upgraded(Stream, Vec<u8>),
    /// Anything else: the status and the JSON body.
    Refused(u16, serde_json::Value),
}

/// `GET path` with `Upgrade: protocol` over `io` (HTTP/1.1 by hand: one request, its
/// answer's head, then the raw stream), within `wait`.
pub async fn upgrade(
    mut io: Stream,
    host: &str,
    path: &str,
    protocol: &str,
    headers: &[(&str, &str)],
    wait: Duration,
) -> std::io::Result<Upgrade> {
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: upgrade\r\nUpgrade: {protocol}\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    io.write_all(head.as_bytes()).await?;
    let answer = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if got.len() > 64 * 1024 {
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    "an answer head over 64 KiB",
                ));
            }
            let n = io.read(&mut buf).await?;
            if n == 0 {
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    "closed before an answer",
                ));
            }
            got.extend_from_slice(&buf[..n]);
        };
        let text = String::from_utf8_lossy(&got[..end]).to_string();
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::new(ErrorKind::InvalidData, "not an HTTP answer"))?;
        let rest = got[end..].to_vec();
        if status == 101 {
            return Ok(Upgrade::Upgraded(io, rest));
        }
        let length = text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        });
        let mut body = rest;
        match length {
            Some(n) if n <= 1 << 20 => {
                while body.len() < n {
                    let got = io.read(&mut buf).await?;
                    if got == 0 {
                        break;
                    }
                    body.extend_from_slice(&buf[..got]);
                }
            }
            _ => {
                io.take(1 << 20).read_to_end(&mut body).await?;
            }
        }
        Ok(Upgrade::Refused(
            status,
            serde_json::from_slice(&body).unwrap_or_default(),
        ))
    };
    tokio::time::timeout(wait, answer).await.map_err(|_| {
        Error::new(
            ErrorKind::TimedOut,
            format!("no answer within {} s", wait.as_secs()),
        )
    })?
}

/// One HTTP/1.1 request over `io` (from [`connect`]): the answer's status and JSON body
/// (the largest body read is 64 MiB).
pub async fn call(
    io: Stream,
    method: axum::http::Method,
    path_and_query: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> std::io::Result<(u16, serde_json::Value)> {
    let failed = |e: &dyn std::fmt::Display| Error::other(e.to_string());
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| failed(&e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(path_and_query)
        // The endpoint checks Host as serve does (an IP literal is always taken).
        .header(axum::http::header::HOST, "127.0.0.1")
        .header(axum::http::header::CONTENT_TYPE, "application/json");
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let req = req
        .body(axum::body::Body::from(body))
        .map_err(|e| failed(&e))?;
    let answer = sender.send_request(req).await.map_err(|e| failed(&e))?;
    let status = answer.status().as_u16();
    let bytes = axum::body::to_bytes(axum::body::Body::new(answer.into_body()), 64 << 20)
        .await
        .map_err(|e| failed(&e))?;
    let v = serde_json::from_slice(&bytes)
        .map_err(|e| Error::new(ErrorKind::InvalidData, format!("not JSON: {e}")))?;
    Ok((status, v))
}
