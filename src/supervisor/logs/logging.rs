//! Where a container's output goes on this host: a json-file per container, rotated by
//! size and count so a chatty container cannot fill the disk (defaults 10 MiB × 5, set by
//! the json-file driver's own `max-size`/`max-file` options or the host's environment).

use crate::taskdef::model::{LogConfiguration, LogDriver};
use runtime::Rotation;

/// A rotation setting that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(
        "{origin} {name}={value:?} is not a size: use a number of bytes or one with k, m or g (e.g. 10m)"
    )]
    Size {
        origin: &'static str,
        name: &'static str,
        value: String,
    },
    #[error("{origin} {name}={value:?} is not a number of files: use a whole number of at least 1")]
    Files {
        origin: &'static str,
        name: &'static str,
        value: String,
    },
}

pub use crate::config::parse_size;

/// The host's default rotation: `MINIFARGATE_LOG_MAX_SIZE` × `MINIFARGATE_LOG_MAX_FILES`
/// (src/config.rs; [`Rotation::default`] unless set).
pub fn host_rotation() -> Rotation {
    let c = crate::config::get();
    Rotation {
        max_size: c.log_max_size,
        max_files: c.log_max_files,
    }
}

fn rotation_from(
    origin: &'static str,
    size: Option<&str>,
    size_name: &'static str,
    files: Option<&str>,
    files_name: &'static str,
    base: Rotation,
) -> Result<Rotation, RotationError> {
    let mut r = base;
    if let Some(v) = size.filter(|v| !v.trim().is_empty()) {
        r.max_size = parse_size(v).ok_or_else(|| RotationError::Size {
            origin,
            name: size_name,
            value: v.into(),
        })?;
    }
    if let Some(v) = files.filter(|v| !v.trim().is_empty()) {
        r.max_files =
            v.trim()
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| RotationError::Files {
                    origin,
                    name: files_name,
                    value: v.into(),
                })?;
    }
    Ok(r)
}

/// The rotation of a container's json-file: the host's, with the json-file driver's
/// `max-size`/`max-file` options when the container asks for that driver (as Docker's
/// json-file driver reads them; on ECS they apply on EC2, Fargate refuses the driver).
pub fn rotation(lc: Option<&LogConfiguration>) -> Result<Rotation, RotationError> {
    let host = host_rotation();
    let Some(lc) = lc.filter(|lc| lc.log_driver == Some(LogDriver::JsonFile)) else {
        return Ok(host);
    };
    let opt = |k: &str| {
        lc.options
            .as_ref()
            .and_then(|o| o.get(k))
            .map(String::as_str)
    };
    rotation_from(
        "logConfiguration option",
        opt("max-size"),
        "max-size",
        opt("max-file"),
        "max-file",
        host,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("2MiB"), Some(2 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("ten"), None);
        assert_eq!(parse_size("-1m"), None);
    }

    #[test]
    fn json_file_options_override_the_host_default() {
        let lc: LogConfiguration = serde_json::from_value(serde_json::json!({
            "logDriver": "json-file", "options": {"max-size": "1m", "max-file": "2"}
        }))
        .unwrap();
        let r = rotation(Some(&lc)).unwrap();
        assert_eq!((r.max_size, r.max_files), (1 << 20, 2));
        // Another driver's options are not json-file's.
        let lc: LogConfiguration = serde_json::from_value(serde_json::json!({
            "logDriver": "awslogs", "options": {"max-size": "1m"}
        }))
        .unwrap();
        assert_eq!(
            rotation(Some(&lc)).unwrap().max_size,
            host_rotation().max_size
        );
        let lc: LogConfiguration = serde_json::from_value(serde_json::json!({
            "logDriver": "json-file", "options": {"max-file": "0"}
        }))
        .unwrap();
        let e = rotation(Some(&lc)).unwrap_err().to_string();
        assert!(e.contains("max-file=\"0\""), "{e}");
    }
}
