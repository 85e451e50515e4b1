//! `push`: one image of an archive ([`crate::archive::for_push`]) into a repository of an
//! OCI distribution registry (serve's ECR), over the distribution API as podman and skopeo
//! push: each blob the registry lacks (`HEAD`) uploaded in chunks (`POST`, `PATCH` with
//! `Content-Range`, `PUT ?digest=`), then the manifests, an index's children by digest
//! and the image under its tag. Bytes and digests are the archive's.
//! Ref: OCI distribution-spec v1.1, "Pushing blobs in chunks", "Pushing Manifests".

use crate::archive::{ArchiveImage, LoadError};
use crate::digest::Digest;
use std::io::Read;
use std::time::Duration;

/// What the upload reads and sends per `PATCH`.
const CHUNK: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("failed to build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("the CA certificate is not PEM")]
    Ca(#[source] reqwest::Error),
    #[error("failed to reach the registry at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the registry answered {status} to {what}{detail}")]
    Status {
        what: String,
        status: u16,
        detail: String,
    },
    #[error(transparent)]
    Archive(#[from] LoadError),
}

/// Where to push: the registry's base URL (`https://127.0.0.1:8080`), the repository, the
/// tag (none: the image goes by digest only), Basic credentials and the CA to verify the
/// registry's certificate with alone (none: the system's roots).
pub struct Target {
    pub base: String,
    pub repository: String,
    pub tag: Option<String>,
    pub basic: Option<(String, String)>,
    pub ca_pem: Option<Vec<u8>>,
}

/// What [`push`] did.
#[derive(Debug, Default)]
pub struct Pushed {
    /// The digest the tag names (the archive's top manifest).
    pub digest: Option<Digest>,
    /// Blobs uploaded and their bytes; blobs the registry had already.
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub present: usize,
}

struct Http {
    client: reqwest::Client,
    t: Target,
}

impl Http {
    fn req(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, url);
        match &self.t.basic {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/v2/{}/{path}",
            self.t.base.trim_end_matches('/'),
            self.t.repository
        )
    }

    /// A `Location` header resolved against the registry's base.
    fn location(&self, resp: &reqwest::Response, what: &str) -> Result<String, PushError> {
        let loc = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| PushError::Status {
                what: what.to_string(),
                status: resp.status().as_u16(),
                detail: " (no Location header)".into(),
            })?;
        Ok(
            if loc.starts_with("http://") || loc.starts_with("https://") {
                loc.to_string()
            } else {
                format!("{}{loc}", self.t.base.trim_end_matches('/'))
            },
        )
    }

    async fn send(
        &self,
        r: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, PushError> {
        r.send().await.map_err(|source| PushError::Unreachable {
            url: url.to_string(),
            source,
        })
    }

    /// `resp` when its status is one of `ok`, else the registry's error.
    async fn expect(
        resp: reqwest::Response,
        ok: &[u16],
        what: &str,
    ) -> Result<reqwest::Response, PushError> {
        let status = resp.status().as_u16();
        if ok.contains(&status) {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        Err(PushError::Status {
            what: what.to_string(),
            status,
            detail: crate::client::error_detail(&body),
        })
    }

    async fn blob(&self, img: &ArchiveImage, i: usize, out: &mut Pushed) -> Result<(), PushError> {
        let (digest, size, _) = &img.blobs[i];
        let url = self.url(&format!("blobs/{digest}"));
        let head = self
            .send(self.req(reqwest::Method::HEAD, &url), &url)
            .await?;
        if head.status().is_success() {
            out.present += 1;
            return Ok(());
        }
        Self::expect(head, &[404], &format!("HEAD of blob {digest}")).await?;
        let start = self.url("blobs/uploads/");
        let what = format!("the upload of blob {digest}");
        let resp = self
            .send(self.req(reqwest::Method::POST, &start), &start)
            .await?;
        let resp = Self::expect(resp, &[202], &what).await?;
        let mut loc = self.location(&resp, &what)?;
        let mut r = img.open_blob(i)?;
        let mut sent: u64 = 0;
        loop {
            let mut buf = Vec::with_capacity(CHUNK);
            let n = (&mut r)
                .take(CHUNK as u64)
                .read_to_end(&mut buf)
                .map_err(|source| LoadError::Read {
                    path: format!("blob {digest} of the archive").into(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            let range = format!("{}-{}", sent, sent + n as u64 - 1);
            let resp = self
                .send(
                    self.req(reqwest::Method::PATCH, &loc)
                        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                        .header("Content-Range", range)
                        .body(buf),
                    &loc,
                )
                .await?;
            let resp = Self::expect(resp, &[202], &what).await?;
            loc = self.location(&resp, &what)?;
            sent += n as u64;
        }
        let sep = if loc.contains('?') { '&' } else { '?' };
        let close = format!("{loc}{sep}digest={digest}");
        let resp = self
            .send(
                self.req(reqwest::Method::PUT, &close)
                    .header(reqwest::header::CONTENT_LENGTH, 0),
                &close,
            )
            .await?;
        Self::expect(resp, &[201], &what).await?;
        out.uploaded += 1;
        out.uploaded_bytes += size;
        Ok(())
    }
}

/// Pushes `img` to `t`: blobs first, then manifests (children by digest, the top one by
/// `t.tag`, or by digest without one).
pub async fn push(img: &ArchiveImage, t: Target) -> Result<Pushed, PushError> {
    let mut b = crate::client::with_env_proxies(reqwest::Client::builder())
        .user_agent(concat!("minifargate/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(120));
    if let Some(pem) = &t.ca_pem {
        let ca = reqwest::Certificate::from_pem(pem).map_err(PushError::Ca)?;
        b = b.tls_built_in_root_certs(false).add_root_certificate(ca);
    }
    let http = Http {
        client: b.build().map_err(PushError::Client)?,
        t,
    };
    let mut out = Pushed::default();
    for i in 0..img.blobs.len() {
        http.blob(img, i, &mut out).await?;
    }
    let last = img.manifests.len().saturating_sub(1);
    for (i, (digest, media_type, bytes)) in img.manifests.iter().enumerate() {
        let reference = match (&http.t.tag, i == last) {
            (Some(tag), true) => tag.clone(),
            _ => digest.to_string(),
        };
        let url = http.url(&format!("manifests/{reference}"));
        let resp = http
            .send(
                http.req(reqwest::Method::PUT, &url)
                    .header(reqwest::header::CONTENT_TYPE, media_type.as_str())
                    .body(bytes.clone()),
                &url,
            )
            .await?;
        Http::expect(
            resp,
            &[201],
            &format!("the manifest {digest} ({reference})"),
        )
        .await?;
        if i == last {
            out.digest = Some(digest.clone());
        }
    }
    Ok(out)
}
