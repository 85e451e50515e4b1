//! The one timestamp type of every ECS shape (a task's `createdAt`, a deployment's
//! `updatedAt`, a definition's `registeredAt` …): milliseconds since the epoch, which each
//! protocol renders its way. By default as the AWS CLI prints them (ISO 8601, microseconds,
//! numeric offset); the JSON 1.1 API encodes inside [`epoch_seconds`] (fractional seconds,
//! as AWS's JSON protocols carry a `timestamp` member).

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::Cell;

/// An instant, to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn from_ms(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or_default()
    }

    /// ISO 8601 with microseconds and a numeric offset, as the AWS CLI prints timestamps.
    pub fn cli_text(self) -> String {
        self.to_datetime()
            .format("%Y-%m-%dT%H:%M:%S%.6f%:z")
            .to_string()
    }

    /// Seconds since the epoch, with the milliseconds as the fraction (JSON 1.1).
    pub fn epoch_seconds(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

thread_local! {
    static EPOCH_SECONDS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (an encoding) with every [`Timestamp`] serialized as epoch seconds.
pub fn epoch_seconds<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the rendering when `f` returns or unwinds.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            EPOCH_SECONDS.set(self.0);
        }
    }
    let _restore = Restore(EPOCH_SECONDS.replace(true));
    f()
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if EPOCH_SECONDS.get() {
            s.serialize_f64(self.epoch_seconds())
        } else {
            s.serialize_str(&self.cli_text())
        }
    }
}

/// A timestamp in a task definition file: describe output fed back, as either protocol
/// renders it (epoch seconds, or RFC 3339 text). Read-only members: the store sets its own.
impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a timestamp: epoch seconds or RFC 3339 text")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Timestamp, E> {
                Ok(Timestamp((v * 1000.0).round() as i64))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v.saturating_mul(1000)))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                if let Ok(t) = DateTime::parse_from_rfc3339(v) {
                    return Ok(Timestamp(t.timestamp_millis()));
                }
                v.trim()
                    .parse::<f64>()
                    .map(|s| Timestamp((s * 1000.0).round() as i64))
                    .map_err(|_| E::custom(format!("{v:?} is not a timestamp")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_protocol_renders_its_way() {
        let t = Timestamp::from_ms(1_714_557_600_250);
        let v = json!({ "createdAt": t });
        assert_eq!(v["createdAt"], "2024-05-01T10:00:00.250000+00:00");
        let v = epoch_seconds(|| json!({ "createdAt": t }));
        assert_eq!(v["createdAt"], json!(1714557600.25));
        // Back to the CLI's text once the encoding is done.
        assert_eq!(json!(t), json!("2024-05-01T10:00:00.250000+00:00"));
    }

    #[test]
    fn reads_either_rendering_back() {
        for v in [
            json!(1714557600.25),
            json!("2024-05-01T10:00:00.250000+00:00"),
            json!("2024-05-01T12:00:00.250+02:00"),
        ] {
            let t: Timestamp = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(t, Timestamp::from_ms(1_714_557_600_250), "{v}");
        }
        assert!(serde_json::from_value::<Timestamp>(json!("yesterday")).is_err());
        assert!(serde_json::from_value::<Timestamp>(json!([1])).is_err());
    }
}
