//! Health checks: one tokio task per registered target of each group a listener uses,
//! checking it with the group's settings (HTTP: `GET <path>` answered with a matcher
//! code within the timeout; TCP: a connection within the timeout), then sleeping the
//! interval — no polling in between. The set of tasks follows the resources' changes
//! (`Elb::changes`). Ref: target-group-health-checks.html (reason codes, thresholds).

use super::{Check, Elb};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Runs the health checks until the runtime stops.
pub async fn run(elb: Arc<Elb>) {
    let mut changes = elb.changes();
    let mut running: HashMap<Check, JoinHandle<()>> = HashMap::new();
    loop {
        let want = elb.checks();
        running.retain(|c, h| {
            let keep = want.contains(c) && !h.is_finished();
            if !keep {
                h.abort();
            }
            keep
        });
        for c in want {
            running
                .entry(c.clone())
                .or_insert_with(|| tokio::spawn(check_loop(elb.clone(), c)));
        }
        if changes.changed().await.is_err() {
            break;
        }
    }
    for (_, h) in running {
        h.abort();
    }
}

async fn check_loop(elb: Arc<Elb>, c: Check) {
    let interval = Duration::from_secs(c.settings.interval.max(1) as u64);
    loop {
        let outcome = check_once(&c).await;
        elb.report(&c, outcome);
        tokio::time::sleep(interval).await;
    }
}

/// One check: Ok, or ELB's reason code and description.
pub async fn check_once(c: &Check) -> Result<(), (&'static str, String)> {
    let timeout = Duration::from_secs(c.settings.timeout.max(1) as u64);
    let timed_out = || ("Target.Timeout", "Request timed out".to_string());
    let failed = || {
        (
            "Target.FailedHealthChecks",
            "Health checks failed".to_string(),
        )
    };
    let mut stream =
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(c.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return Err(failed()),
            Err(_) => return Err(timed_out()),
        };
    // NLB User Guide, "Proxy protocol": health checks carry the header too, without the
    // client's information.
    if c.proxy_v2 {
        use tokio::io::AsyncWriteExt;
        let header = super::proxy_protocol::local();
        match tokio::time::timeout(timeout, stream.write_all(&header)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(failed()),
            Err(_) => return Err(timed_out()),
        }
    }
    if c.settings.protocol != "HTTP" {
        return Ok(());
    }
    let path = c.settings.path.clone().unwrap_or_else(|| "/".into());
    let host = c.addr.to_string();
    let status = tokio::time::timeout(timeout, async move {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, host)
            .header(hyper::header::USER_AGENT, "ELB-HealthChecker/2.0")
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .expect("a GET request is well formed");
        let resp = sender.send_request(req).await?;
        Ok::<u16, hyper::Error>(resp.status().as_u16())
    })
    .await;
    match status {
        Err(_) => Err(timed_out()),
        Ok(Err(_)) => Err(failed()),
        Ok(Ok(code)) => {
            let codes = c.settings.matcher.as_deref().unwrap_or("200");
            if super::ops::code_matches(codes, code) {
                Ok(())
            } else {
                Err((
                    "Target.ResponseCodeMismatch",
                    format!("Health checks failed with these codes: [{code}]"),
                ))
            }
        }
    }
}

/// One box: the file in the run root where serve publishes its targets' health (its
/// checks run in serve; the CLI's DescribeTargetHealth answers from it, as a serve of a
/// cluster answers from what the leader publishes in etcd). Gone when serve stops.
pub fn published_file(run_root: &std::path::Path) -> std::path::PathBuf {
    run_root.join("elb-health.json")
}

/// Writes `rows` to [`published_file`] (a whole file at once: temp and rename).
pub fn publish_to_file(
    run_root: &std::path::Path,
    rows: &[super::PublishedHealth],
) -> std::io::Result<()> {
    let path = published_file(run_root);
    let tmp = path.with_extension("json.tmp");
    std::fs::create_dir_all(run_root)?;
    std::fs::write(
        &tmp,
        serde_json::to_vec(rows).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

/// What serve last published in [`published_file`]; none when no serve runs, and none,
/// said, when it cannot be read or does not decode.
pub fn published_in_file(run_root: &std::path::Path) -> Vec<super::PublishedHealth> {
    let path = published_file(run_root);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read serve's targets' health: targets shown as initial");
            return Vec::new();
        }
    };
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        tracing::warn!(path = %path.display(), error = %e, "serve's targets' health does not decode: targets shown as initial");
        Vec::new()
    })
}
