//! A throw-away certificate authority made with the openssl CLI: the registry's
//! server certificate and the token service's signing certificate come from it.

use super::util::run_ok;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestCa {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn serial() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("0x{:x}{:x}", nanos, std::process::id())
}

impl TestCa {
    /// A new CA in `dir` (which must exist).
    pub fn new(dir: &Path) -> TestCa {
        let cert = dir.join("ca.crt");
        let key = dir.join("ca.key");
        run_ok(Command::new("openssl").args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=minifargate test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-set_serial",
            &serial(),
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]));
        TestCa {
            dir: dir.to_path_buf(),
            cert,
            key,
        }
    }

    /// A leaf certificate named `name`: for a TLS server (`dns`/`ips` as SANs) or,
    /// with `server == false`, for signing tokens.
    pub fn issue(&self, name: &str, dns: &[&str], ips: &[&str], server: bool) -> Issued {
        self.issue_for(name, dns, ips, server.then_some("serverAuth"))
    }

    /// A TLS server certificate that is also a client certificate (extended key usage
    /// serverAuth and clientAuth), as etcd's gateway needs with `--client-cert-auth`: it
    /// dials etcd's own gRPC server with it.
    pub fn issue_server_and_client(&self, name: &str, dns: &[&str], ips: &[&str]) -> Issued {
        self.issue_for(name, dns, ips, Some("serverAuth,clientAuth"))
    }

    fn issue_for(&self, name: &str, dns: &[&str], ips: &[&str], server: Option<&str>) -> Issued {
        let cert = self.dir.join(format!("{name}.crt"));
        let key = self.dir.join(format!("{name}.key"));
        let csr = self.dir.join(format!("{name}.csr"));
        let ext = self.dir.join(format!("{name}.ext"));
        let mut sans: Vec<String> = dns.iter().map(|d| format!("DNS:{d}")).collect();
        sans.extend(ips.iter().map(|i| format!("IP:{i}")));
        let mut text = String::from("basicConstraints=critical,CA:FALSE\n");
        if let Some(usage) = server {
            text.push_str("keyUsage=critical,digitalSignature,keyEncipherment\n");
            text.push_str(&format!("extendedKeyUsage={usage}\n"));
            text.push_str(&format!("subjectAltName={}\n", sans.join(",")));
        } else {
            text.push_str("keyUsage=critical,digitalSignature\n");
        }
        std::fs::write(&ext, text).unwrap();
        run_ok(Command::new("openssl").args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={}", dns.first().copied().unwrap_or(name)),
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
        ]));
        run_ok(Command::new("openssl").args([
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            self.cert.to_str().unwrap(),
            "-CAkey",
            self.key.to_str().unwrap(),
            "-set_serial",
            &serial(),
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]));
        Issued { cert, key }
    }
}
