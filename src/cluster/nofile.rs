//! The process's open-file limit for the many connections a cluster holds (serve's port
//! for boxes, a process of hollow boxes): the soft limit raised to the hard one, which
//! only root could raise further, so a box connection is never refused for a limit the
//! process could have lifted itself.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; the soft limit in force after
/// (unchanged when it could not be read or set: said).
pub fn raise() -> u64 {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit (RLIMIT_NOFILE)");
            return 1024;
        }
    };
    if soft >= hard {
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::info!(
                from = soft,
                to = hard,
                "open-file limit (RLIMIT_NOFILE) raised to its hard limit"
            );
            hard
        }
        Err(e) => {
            tracing::warn!(error = %e, soft, hard,
                "cannot raise the open-file limit (RLIMIT_NOFILE) to its hard limit");
            soft
        }
    }
}

/// How many of `wanted` connections fit under an open-file limit of `nofile` when each
/// costs `per` descriptors and `spare` are kept for everything else; said when fewer.
pub fn clamp(what: &str, wanted: usize, per: usize, nofile: u64, spare: u64) -> usize {
    let fit = (nofile.saturating_sub(spare) / per.max(1) as u64) as usize;
    if fit < wanted {
        tracing::warn!(
            what,
            wanted,
            fit,
            nofile,
            "the open-file limit (RLIMIT_NOFILE, hard) allows fewer connections than \
             wanted: raise the hard limit (systemd LimitNOFILE=, ulimit -Hn as root) for more"
        );
        return fit.max(1);
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_under_the_limit_with_room_kept() {
        assert_eq!(clamp("t", 100, 2, 20_000, 1_000), 100);
        assert_eq!(clamp("t", 16_384, 2, 20_000, 1_000), 9_500);
        assert_eq!(clamp("t", 10, 2, 100, 1_000), 1);
        assert!(raise() >= 1);
    }
}
