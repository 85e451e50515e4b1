//! The API's connection loop: HTTP/1 over TCP or TLS (rustls), with the bounds axum's own
//! `serve` does not offer — a cap on open connections, a header/idle timeout (a slow-loris
//! client is cut off), a TLS handshake deadline and a head size limit — and a graceful stop.

use super::guard::Limits;
use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// How long a stop waits for requests in progress (a RunTask is writing its tasks).
const DRAIN: Duration = Duration::from_secs(30);

/// A TLS acceptor from a PEM certificate chain and private key; with `clients`, a client
/// certificate it accepts is required (a cluster agent's endpoint).
pub fn tls_acceptor(
    cert: &Path,
    key: &Path,
    clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> anyhow::Result<TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "failed to read the TLS certificate chain {} (PEM expected)",
                cert.display()
            )
        })?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "failed to read the TLS private key {} (PEM: PKCS#8, PKCS#1 or SEC1)",
            key.display()
        )
    })?;
    acceptor(certs, key, clients).with_context(|| {
        format!(
            "the TLS certificate {} and key do not make a usable pair",
            cert.display()
        )
    })
}

/// The acceptor of a parsed certificate chain and key.
fn acceptor(
    certs: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
    clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("failed to set up TLS")?;
    let config = match clients {
        Some(v) => config.with_client_cert_verifier(v),
        None => config.with_no_client_auth(),
    };
    let mut config = config.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// [`tls_acceptor`] from a certificate chain and key in memory (PEM).
pub fn tls_acceptor_pem(
    cert: &str,
    key: &str,
    clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> anyhow::Result<TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("a TLS certificate chain that is not PEM")?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).context("a TLS key that is not PEM")?;
    acceptor(certs, key, clients)
}

/// How a listener speaks TLS.
#[derive(Clone)]
pub enum Tls {
    /// Plain HTTP.
    Off,
    /// Every connection is TLS.
    On(TlsAcceptor),
    /// A connection that opens with a TLS handshake record gets TLS, another plain HTTP:
    /// serve's one port for the AWS CLI's `http://` endpoint and the registry's HTTPS
    /// clients (podman, skopeo) alike.
    Sniff(TlsAcceptor),
}

/// The first byte of a TLS connection: a handshake record. Ref: RFC 8446 §5.1
/// (ContentType handshake = 22). No HTTP method begins with it.
const TLS_HANDSHAKE: u8 = 0x16;

/// Serves `app` on `listener` until `stop` resolves, then lets the requests in progress
/// finish (up to 30 s).
pub async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let tls = match tls {
        Some(a) => Tls::On(a),
        None => Tls::Off,
    };
    run_with(listener, tls, app, limits, stop).await
}

/// [`run`] with any [`Tls`] mode.
pub async fn run_with(
    listener: TcpListener,
    tls: Tls,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stopping_tx, stopping) = watch::channel(false);
    tokio::pin!(stop);
    loop {
        // A slot first: at the cap, new clients wait in the accept queue rather than
        // being accepted and starved.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s { Ok(s) => s, Err(_) => break },
            _ = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "failed to accept an API connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tls {
                Tls::Off => None,
                Tls::On(a) => Some(a),
                Tls::Sniff(a) => {
                    let mut first = [0u8; 1];
                    match tokio::time::timeout(limits.handshake_timeout, stream.peek(&mut first))
                        .await
                    {
                        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => Some(a),
                        Ok(Ok(1)) => None,
                        // Closed, failed or silent before its first byte.
                        _ => return,
                    }
                }
            };
            match tls {
                None => connection(stream, app, limits, stopping).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(s)) => {
                            let peer = s
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .map(|c| {
                                    crate::certs::PeerCertificate(Arc::new(c.as_ref().to_vec()))
                                });
                            let app = match peer {
                                Some(p) => app.layer(axum::Extension(p)),
                                None => app,
                            };
                            connection(s, app, limits, stopping).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    let _ = stopping_tx.send(true);
    let all = limits.max_connections as u32;
    if tokio::time::timeout(DRAIN, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("API requests still in progress after 30 s; stopping anyway");
    }
}

/// One HTTP/1 connection: keep-alive, the header/idle timeout, a graceful close on stop.
async fn connection<I>(io: I, app: Router, limits: Limits, mut stopping: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head)
        .serve_connection(TokioIo::new(io), service)
        // An agent's exec is an upgraded connection (src/cluster/endpoint.rs); the API's
        // routes never upgrade, so for them this changes nothing.
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "API connection ended");
            }
        }
        _ = async { let _ = stopping.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::guard::{Guard, guard};
    use axum::routing::post;
    use std::io::{Read, Write};

    /// `app` behind the guard with `limits`, served on a free loopback port until the
    /// returned sender is dropped.
    fn start(
        limits: Limits,
        app: Router,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let app = app.layer(axum::middleware::from_fn_with_state(
            Arc::new(Guard::new(None, limits)),
            guard,
        ));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(l.local_addr().unwrap()).unwrap();
                run(l, None, app, limits, async {
                    let _ = rx.await;
                })
                .await;
            });
        });
        (addr_rx.recv().unwrap(), tx)
    }

    fn post_raw(addr: std::net::SocketAddr) -> String {
        let mut t = std::net::TcpStream::connect(addr).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        t.write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        )
        .unwrap();
        let mut s = String::new();
        let _ = t.read_to_string(&mut s);
        s
    }

    /// More requests than the in-flight cap at once: the extra ones are answered
    /// ThrottlingException at once, the others complete.
    #[test]
    fn requests_over_the_in_flight_cap_are_throttled() {
        let limits = Limits {
            max_in_flight: 2,
            ..Limits::default()
        };
        let slow = Router::new().route(
            "/",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "done"
            }),
        );
        let (addr, _stop) = start(limits, slow);
        let clients: Vec<_> = (0..6)
            .map(|_| std::thread::spawn(move || post_raw(addr)))
            .collect();
        let replies: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        let done = replies.iter().filter(|r| r.ends_with("done")).count();
        let throttled = replies
            .iter()
            .filter(|r| r.contains("\"__type\":\"ThrottlingException\""))
            .count();
        assert_eq!(done + throttled, 6, "{replies:?}");
        assert!((1..=2).contains(&done), "at most 2 in flight: {replies:?}");
        assert!(throttled >= 4, "{replies:?}");
    }

    /// At the connection cap, a further client waits in the accept queue until a slot
    /// frees up (here: the first client's idle connection times out).
    #[test]
    fn connections_over_the_cap_wait_for_a_slot() {
        let limits = Limits {
            max_connections: 1,
            header_timeout: Duration::from_secs(2),
            ..Limits::default()
        };
        let app = Router::new().route("/", post(|| async { "ok" }));
        let (addr, _stop) = start(limits, app);
        let _idle = std::net::TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let reply = post_raw(addr);
        let waited = started.elapsed();
        assert!(reply.ends_with("ok"), "{reply}");
        assert!(
            waited >= Duration::from_millis(1500),
            "served after {waited:?}, before the idle connection timed out"
        );
    }
}
