//! The repository URI on the box: the registry answers at its ECR host name
//! (`<account>.dkr.ecr.<region>.amazonaws.com`, port 443, where docker, podman and skopeo
//! send `<host>/<name>:<tag>`) on a loopback address of this serve's own, named in serve's
//! hosts block. docs/registry.md "The repository URI on the box".

use sha2::Digest;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The port a registry host name without one means (HTTPS; ECR's).
pub const PORT: u16 = 443;

/// The loopback address this serve's registry answers its ECR host name on:
/// `127.A.B.C` from the state root, so two serves of two roots on one host get two
/// addresses, and port 443 there is free even when something else holds 127.0.0.1:443
/// (Linux routes all of 127.0.0.0/8 to `lo`: nothing to add). Never `127.0.x.x`
/// (127.0.0.1, systemd-resolved's 127.0.0.53) nor a `.0`/`.255` end.
pub fn loopback_address(root: &Path) -> Ipv4Addr {
    let h = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
    Ipv4Addr::new(127, 1 + h[0] % 254, h[1], 1 + h[2] % 254)
}

/// The listener on `<address>:443`, bound before serve says it listens.
pub struct Bound {
    ip: Ipv4Addr,
    listener: tokio::net::TcpListener,
}

impl Bound {
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }
}

/// Binds port 443 of this serve's loopback address for the registry's host name `host`.
/// When it cannot (no privilege for a port under 1024, the port taken), says so and why,
/// with what works instead (`fallback`, serve's own `host:port`): the repository URIs
/// then do not reach this registry from docker, podman or skopeo.
pub async fn bind(root: &Path, host: &str, fallback: SocketAddr) -> Option<Bound> {
    let ip = loopback_address(root);
    let at = SocketAddr::from((ip, PORT));
    match tokio::net::TcpListener::bind(at).await {
        Ok(listener) => Some(Bound { ip, listener }),
        Err(e) => {
            eprintln!(
                "minifargate: warning: the registry does not answer at its host name {host}: \
                 failed to listen on {at}: {e}; `docker push`, `podman push` and `skopeo copy` \
                 to the repository URIs ({host}/<name>) will not reach it: push to \
                 {}/<name> instead (task definitions naming the repository URIs still run \
                 from this registry; docs/registry.md \"The repository URI on the box\")",
                local_address(fallback)
            );
            None
        }
    }
}

/// What clients of this box reach serve's own port at (a wildcard listener: 127.0.0.1).
fn local_address(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
    } else {
        addr
    }
}

/// The registry answering on `<address>:443` (TLS only, the registry's certificate) and
/// its name in the hosts block, until [`Serving::stop`].
pub struct Serving {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    names: Arc<Mutex<crate::elb::names::Names>>,
}

impl Bound {
    /// Serves `app` (serve's, behind its guard) here and names `host` in the hosts file.
    pub async fn serve(
        self,
        host: &str,
        acceptor: tokio_rustls::TlsAcceptor,
        app: axum::Router,
        limits: super::guard::Limits,
        names: Arc<Mutex<crate::elb::names::Names>>,
    ) -> Serving {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(super::server::run_with(
            self.listener,
            super::server::Tls::On(acceptor),
            app,
            limits,
            async move {
                let _ = stopped.await;
            },
        ));
        let entry = (host.to_string(), self.ip);
        let named = names.clone();
        // The hosts file is written off the runtime's threads, as the load balancers' are.
        let _ = tokio::task::spawn_blocking(move || lock(&named).set_registry(Some(entry))).await;
        let hosts = crate::config::get().hosts_file.clone();
        match hosts {
            Some(file) => eprintln!(
                "minifargate: the registry answers at {host} (port {PORT} of {}, named in {}): \
                 docker, podman and skopeo push to the repository URIs {host}/<name>:<tag>",
                self.ip,
                file.display()
            ),
            None => eprintln!(
                "minifargate: warning: the registry answers on port {PORT} of {}, but \
                 MINIFARGATE_HOSTS_FILE=off: its host name {host} does not resolve to it on \
                 this box, so the repository URIs reach it only where that name is mapped to \
                 {} (docs/registry.md \"The repository URI on the box\")",
                self.ip, self.ip
            ),
        }
        Serving { stop, task, names }
    }
}

impl Serving {
    /// Takes the name out of the hosts file, then stops the listener (requests in
    /// progress finish, as on serve's port).
    pub async fn stop(self) {
        let names = self.names.clone();
        let _ = tokio::task::spawn_blocking(move || lock(&names).set_registry(None)).await;
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

fn lock(
    names: &Mutex<crate::elb::names::Names>,
) -> std::sync::MutexGuard<'_, crate::elb::names::Names> {
    names.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_root_gets_a_loopback_address_of_its_own_off_127_0() {
        let a = loopback_address(Path::new("/var/lib/minifargate"));
        assert_eq!(a, loopback_address(Path::new("/var/lib/minifargate")));
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..2000 {
            let ip = loopback_address(Path::new(&format!("/tmp/mf-test-{i}/root")));
            let o = ip.octets();
            assert!(
                ip.is_loopback() && o[1] != 0 && o[3] != 0 && o[3] != 255,
                "{ip}"
            );
            seen.insert(ip);
        }
        assert_eq!(seen.len(), 2000, "no two of 2000 roots share an address");
    }
}
