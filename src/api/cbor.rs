//! Smithy RPC v2 CBOR bodies (the protocol botocore's CloudWatch model lists first):
//! a request's CBOR read into the JSON the services' cores take, an answer's JSON written
//! as CBOR.
//!
//! The mapping is the AWS JSON protocols' own, so that one core serves both: a timestamp
//! (CBOR tag 1 over epoch seconds) is a JSON number of epoch seconds, a blob (a CBOR byte
//! string) base64 text, a double JSON has no number for (NaN, ±infinity) the strings
//! `NaN`, `Infinity`, `-Infinity`. On the way out, the members a service names as
//! timestamps are tagged again; every other JSON number stays an integer or a float as it
//! was built.
//!
//! Ref: Smithy 2.0, "RPC v2 CBOR protocol" (serialization: timestamps as tag 1, blobs as
//! major type 2, floats as major type 7; `smithy-protocol: rpc-v2-cbor`); botocore
//! `serialize.py` (`CBORSerializer`) and `parsers.py` (`BaseCBORParser`).

use base64::Engine as _;
use ciborium::value::{Integer, Value as Cbor};
use serde_json::{Map, Number, Value};

/// A body that is not CBOR the protocol allows.
#[derive(Debug, thiserror::Error)]
pub enum CborError {
    #[error("the body is not CBOR: {0}")]
    Decode(String),
    #[error("{0}")]
    Unsupported(String),
}

/// A request's CBOR body as JSON (an empty body is `{}`).
pub fn to_json(body: &[u8]) -> Result<Value, CborError> {
    if body.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let v: Cbor = ciborium::de::from_reader(body).map_err(|e| CborError::Decode(e.to_string()))?;
    json_of(v, 0)
}

/// Nesting bound: the model's shapes are a few levels deep; a deeper body is hostile.
const MAX_DEPTH: usize = 64;

fn json_of(v: Cbor, depth: usize) -> Result<Value, CborError> {
    if depth > MAX_DEPTH {
        return Err(CborError::Unsupported(format!(
            "the body nests deeper than {MAX_DEPTH} levels"
        )));
    }
    Ok(match v {
        Cbor::Integer(i) => {
            let i = i128::from(i);
            if let Ok(u) = u64::try_from(i) {
                Value::Number(u.into())
            } else if let Ok(s) = i64::try_from(i) {
                Value::Number(s.into())
            } else {
                return Err(CborError::Unsupported(format!(
                    "the integer {i} is out of the model's range"
                )));
            }
        }
        Cbor::Float(f) => float(f),
        Cbor::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Cbor::Text(s) => Value::String(s),
        Cbor::Bool(b) => Value::Bool(b),
        Cbor::Null => Value::Null,
        Cbor::Tag(1, inner) => match *inner {
            Cbor::Integer(i) => json_of(Cbor::Integer(i), depth + 1)?,
            Cbor::Float(f) if f.is_finite() => float(f),
            other => {
                return Err(CborError::Unsupported(format!(
                    "a timestamp (tag 1) over {other:?}: epoch seconds are expected"
                )));
            }
        },
        Cbor::Tag(t, _) => {
            return Err(CborError::Unsupported(format!(
                "CBOR tag {t}: the protocol uses tag 1 (timestamps) only"
            )));
        }
        Cbor::Array(a) => Value::Array(
            a.into_iter()
                .map(|x| json_of(x, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Cbor::Map(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let Cbor::Text(k) = k else {
                    return Err(CborError::Unsupported(format!(
                        "a map key {k:?}: structure and map keys are text"
                    )));
                };
                // A null member is an absent one (Smithy: null in a structure is absence).
                if v.is_null() {
                    continue;
                }
                out.insert(k, json_of(v, depth + 1)?);
            }
            Value::Object(out)
        }
        other => {
            return Err(CborError::Unsupported(format!(
                "{other:?} is not a value of the protocol"
            )));
        }
    })
}

fn float(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

/// An answer's JSON as CBOR: members named in `timestamps` (a number, or a list of
/// numbers) are tagged as timestamps.
pub fn from_json(v: &Value, timestamps: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = ciborium::ser::into_writer(&cbor_of(v, timestamps, false), &mut out);
    out
}

fn cbor_of(v: &Value, timestamps: &[&str], tag: bool) -> Cbor {
    match v {
        Value::Null => Cbor::Null,
        Value::Bool(b) => Cbor::Bool(*b),
        Value::Number(n) => {
            let plain = if let Some(u) = n.as_u64() {
                Cbor::Integer(Integer::from(u))
            } else if let Some(i) = n.as_i64() {
                Cbor::Integer(Integer::from(i))
            } else {
                Cbor::Float(n.as_f64().unwrap_or(0.0))
            };
            if tag {
                Cbor::Tag(1, Box::new(plain))
            } else {
                plain
            }
        }
        Value::String(s) => Cbor::Text(s.clone()),
        Value::Array(a) => Cbor::Array(a.iter().map(|x| cbor_of(x, timestamps, tag)).collect()),
        Value::Object(m) => Cbor::Map(
            m.iter()
                .map(|(k, x)| {
                    let tag = timestamps.contains(&k.as_str());
                    (Cbor::Text(k.clone()), cbor_of(x, timestamps, tag))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_blobs_and_special_doubles_map_as_the_json_protocols_have_them() {
        let req = Cbor::Map(vec![
            (
                Cbor::Text("StartTime".into()),
                Cbor::Tag(1, Box::new(Cbor::Float(1_800_000_000.5))),
            ),
            (
                Cbor::Text("EndTime".into()),
                Cbor::Tag(1, Box::new(Cbor::Integer(1_800_000_600u64.into()))),
            ),
            (Cbor::Text("Blob".into()), Cbor::Bytes(b"hi".to_vec())),
            (Cbor::Text("V".into()), Cbor::Float(f64::NAN)),
            (Cbor::Text("Gone".into()), Cbor::Null),
            (Cbor::Text("N".into()), Cbor::Integer((-3i64).into())),
        ]);
        let mut body = Vec::new();
        ciborium::ser::into_writer(&req, &mut body).unwrap();
        assert_eq!(
            to_json(&body).unwrap(),
            json!({"StartTime": 1_800_000_000.5, "EndTime": 1_800_000_600u64, "Blob": "aGk=",
                   "V": "NaN", "N": -3})
        );
        assert_eq!(to_json(b"").unwrap(), json!({}));
        assert!(to_json(b"\xff\x00").is_err());
        // Another tag than 1 is refused, naming it.
        let mut t = Vec::new();
        ciborium::ser::into_writer(&Cbor::Tag(55799, Box::new(Cbor::Null)), &mut t).unwrap();
        assert!(to_json(&t).unwrap_err().to_string().contains("tag 55799"));
    }

    #[test]
    fn answers_tag_the_named_timestamp_members_only() {
        let answer = json!({"Timestamps": [1_800_000_000u64, 1_800_000_060.5],
                            "Values": [1.0, 2], "Label": "x"});
        let bytes = from_json(&answer, &["Timestamps"]);
        let v: Cbor = ciborium::de::from_reader(&bytes[..]).unwrap();
        let Cbor::Map(m) = v else { panic!("{v:?}") };
        let get = |k: &str| {
            m.iter()
                .find(|(n, _)| n.as_text() == Some(k))
                .unwrap()
                .1
                .clone()
        };
        let Cbor::Array(ts) = get("Timestamps") else {
            panic!()
        };
        assert!(ts.iter().all(|t| matches!(t, Cbor::Tag(1, _))), "{ts:?}");
        let Cbor::Array(vs) = get("Values") else {
            panic!()
        };
        assert!(matches!(vs[0], Cbor::Float(_)) && matches!(vs[1], Cbor::Integer(_)));
        // And back: the same JSON.
        assert_eq!(to_json(&bytes).unwrap(), answer);
    }
}
