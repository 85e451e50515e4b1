//! A real registry for tests: Debian's `docker-registry` (CNCF distribution 2.8) on a
//! loopback port with a generated config, killed by PID on Drop; seeded with skopeo.

use super::util::{free_port, http_status, run_ok, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Token auth settings for the registry (the token service is in `token.rs`).
#[derive(Clone)]
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub root_cert_bundle: PathBuf,
}

#[derive(Clone, Default)]
pub struct RegistryOpts {
    /// Basic auth: (user, password), stored bcrypt-hashed in an htpasswd file.
    pub htpasswd: Option<(String, String)>,
    /// TLS: (certificate, key).
    pub tls: Option<(PathBuf, PathBuf)>,
    pub token: Option<TokenAuth>,
    /// Fixed port (e.g. 443); a free one when None.
    pub port: Option<u16>,
    /// Accept Docker schema 1 manifests (off by default in distribution 2.8).
    pub schema1: bool,
}

pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    pub opts: RegistryOpts,
    pub dir: TempDir,
    pub storage: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

impl Registry {
    pub fn start(opts: RegistryOpts) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("mf-registry-")
            .tempdir()
            .unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        let mut reg = Registry {
            child: None,
            port: 0,
            opts,
            storage,
            config: dir.path().join("config.yml"),
            log: dir.path().join("registry.log"),
            dir,
        };
        // A port picked free can be taken before the registry binds it: retry.
        for _ in 0..5 {
            reg.port = reg.opts.port.unwrap_or_else(free_port);
            reg.write_config();
            if reg.spawn() {
                return reg;
            }
        }
        panic!("registry did not start; log:\n{}", reg.log_text());
    }

    fn write_config(&self) {
        let mut c = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{}\n  secret: minifargate-test-{}\n",
            self.storage.display(),
            self.port,
            self.port
        );
        if self.opts.schema1 {
            c.push_str("compatibility:\n  schema1:\n    enabled: true\n");
        }
        if let Some((cert, key)) = &self.opts.tls {
            c.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        if let Some((user, pass)) = &self.opts.htpasswd {
            let htpasswd = self.dir.path().join("htpasswd");
            let out = run_ok(Command::new("htpasswd").args(["-Bbn", user, pass]));
            std::fs::write(&htpasswd, out.stdout).unwrap();
            c.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: minifargate-test\n    path: {}\n",
                htpasswd.display()
            ));
        } else if let Some(t) = &self.opts.token {
            c.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.realm,
                t.service,
                t.issuer,
                t.root_cert_bundle.display()
            ));
        }
        std::fs::write(&self.config, c).unwrap();
    }

    /// Start the process on the configured port; false when it exited early.
    fn spawn(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("spawn {REGISTRY_BIN}: {e} (apt-get install docker-registry)")
            });
        self.child = Some(child);
        let url = format!("{}/v2/", self.base_url());
        let up = wait_until("registry /v2/", Duration::from_secs(20), || {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Some(Err(st));
            }
            // 200 anonymous, 401 with auth: either way it answers.
            match http_status(&url) {
                200 | 401 => Some(Ok(())),
                _ => None,
            }
        });
        match up {
            Ok(()) => true,
            Err(_) => {
                self.child = None;
                false
            }
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn base_url(&self) -> String {
        let scheme = if self.opts.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.host())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL the registry (by its PID, through the Child handle) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        let ok = (0..20).any(|_| {
            if self.spawn() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(250));
            false
        });
        assert!(ok, "registry did not restart; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where distribution keeps a blob's bytes in its filesystem storage.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    fn creds(&self) -> Option<String> {
        self.opts.htpasswd.as_ref().map(|(u, p)| format!("{u}:{p}"))
    }

    /// Push `oci:layout:tag` to `repo:tag` on this registry with skopeo (`--all` for an
    /// index); returns the digest skopeo reports for what it pushed.
    pub fn push(&self, layout: &Path, layout_tag: &str, dest: &str) -> String {
        self.push_with(layout, layout_tag, dest, self.creds().as_deref())
    }

    pub fn push_with(
        &self,
        layout: &Path,
        layout_tag: &str,
        dest: &str,
        creds: Option<&str>,
    ) -> String {
        self.push_cmd(layout, layout_tag, dest, creds, &[])
    }

    /// Push converting to Docker schema 1 (`skopeo copy --format v2s1`).
    pub fn push_schema1(&self, layout: &Path, layout_tag: &str, dest: &str) -> String {
        self.push_cmd(layout, layout_tag, dest, None, &["--format", "v2s1"])
    }

    fn push_cmd(
        &self,
        layout: &Path,
        layout_tag: &str,
        dest: &str,
        creds: Option<&str>,
        extra: &[&str],
    ) -> String {
        let digestfile = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = skopeo();
        cmd.args(["copy", "--dest-tls-verify=false", "--digestfile"])
            .arg(digestfile.path());
        // Push exactly what was built (every image of an index), unless a format
        // conversion is asked for: skopeo converts nothing under --preserve-digests.
        if extra.is_empty() {
            cmd.args(["--all", "--preserve-digests"]);
        }
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        cmd.args(extra);
        cmd.arg(format!("oci:{}:{layout_tag}", layout.display()))
            .arg(format!("docker://{}/{dest}", self.host()));
        run_ok(&mut cmd);
        std::fs::read_to_string(digestfile.path())
            .unwrap()
            .trim()
            .to_string()
    }

    /// Uploads `data` as a blob of `repo` (POST, then one PUT with the digest), for
    /// crafted images skopeo would not push; returns the digest.
    pub fn put_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = format!("sha256:{}", super::util::sha256_hex(data));
        let mut cmd = Command::new("curl");
        super::util::no_proxy(&mut cmd);
        cmd.args(["-skf", "-X", "POST", "-D", "-", "-o", "/dev/null"])
            .arg(format!("{}/v2/{repo}/blobs/uploads/", self.base_url()));
        if let Some(c) = self.creds() {
            cmd.args(["-u", &c]);
        }
        let head = String::from_utf8(run_ok(&mut cmd).stdout).unwrap();
        let location = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("location")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no Location in the upload answer: {head}"));
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base_url())
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), data).unwrap();
        let mut cmd = Command::new("curl");
        super::util::no_proxy(&mut cmd);
        cmd.args([
            "-skf",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", file.path().display()))
        .arg(format!("{location}{sep}digest={digest}"));
        if let Some(c) = self.creds() {
            cmd.args(["-u", &c]);
        }
        run_ok(&mut cmd);
        digest
    }

    /// PUTs `body` as the manifest `repo:reference` with `media_type`, unchecked;
    /// returns the HTTP status and the answer's body.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> (u16, String) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), body).unwrap();
        let out_file = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = Command::new("curl");
        super::util::no_proxy(&mut cmd);
        cmd.args(["-sk", "-X", "PUT", "-w", "%{http_code}", "-H"])
            .arg(format!("Content-Type: {media_type}"))
            .arg("-o")
            .arg(out_file.path())
            .arg("--data-binary")
            .arg(format!("@{}", file.path().display()))
            .arg(format!(
                "{}/v2/{repo}/manifests/{reference}",
                self.base_url()
            ));
        if let Some(c) = self.creds() {
            cmd.args(["-u", &c]);
        }
        let out = run_ok(&mut cmd);
        let status = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        (
            status,
            std::fs::read_to_string(out_file.path()).unwrap_or_default(),
        )
    }

    /// The manifest (or index) bytes the registry serves for `repo:reference`, fetched
    /// with curl, so a test can compare them with what it built.
    pub fn manifest(&self, repo: &str, reference: &str) -> Vec<u8> {
        let mut cmd = Command::new("curl");
        super::util::no_proxy(&mut cmd);
        cmd.args(["-skf", "-H"])
            .arg(
                "Accept: application/vnd.oci.image.index.v1+json, \
                 application/vnd.oci.image.manifest.v1+json, \
                 application/vnd.docker.distribution.manifest.v2+json, \
                 application/vnd.docker.distribution.manifest.list.v2+json",
            )
            .arg(format!(
                "{}/v2/{repo}/manifests/{reference}",
                self.base_url()
            ));
        if let Some(c) = self.creds() {
            cmd.args(["-u", &c]);
        }
        run_ok(&mut cmd).stdout
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// skopeo without the host's signature policy getting in the way.
pub fn skopeo() -> Command {
    let mut c = Command::new("skopeo");
    super::util::no_proxy(&mut c);
    c.arg("--insecure-policy");
    c
}
