//! Inputs of `run-task` that are parsed on the CLI side: `--tags` (the AWS CLI's shorthand
//! or JSON) and `--env-file` (Docker's env-file rules).

use crate::ecs::tags::{Tag, check_tags};
use crate::taskdef::model::KeyValuePair;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(
        "InvalidParameterException: --tags {arg:?}: use key=KEY,value=VALUE (one tag per \
         argument) or JSON [{{\"key\":\"KEY\",\"value\":\"VALUE\"}}]"
    )]
    TagSyntax { arg: String },
    #[error("InvalidParameterException: --tags: {why}")]
    TagRule { why: String },
    #[error("failed to read --env-file {path}")]
    EnvFileRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--env-file {path}: line {line}: {why}")]
    EnvFileLine {
        path: String,
        line: usize,
        why: String,
    },
}

/// `--tags` values: each `key=K,value=V` (either order), or one JSON list (also
/// `file://tags.json`), as the AWS CLI accepts them.
pub fn parse_tags(args: &[String]) -> Result<Vec<Tag>, InputError> {
    let mut tags = Vec::new();
    for arg in args {
        let text = match arg.strip_prefix("file://") {
            Some(p) => std::fs::read_to_string(p).map_err(|source| InputError::EnvFileRead {
                path: p.to_string(),
                source,
            })?,
            None => arg.clone(),
        };
        let trimmed = text.trim_start();
        if trimmed.starts_with('[') || trimmed.starts_with('{') {
            let parsed: Vec<Tag> = if trimmed.starts_with('{') {
                serde_json::from_str(trimmed).map(|t: Tag| vec![t])
            } else {
                serde_json::from_str(trimmed)
            }
            .map_err(|_| InputError::TagSyntax { arg: arg.clone() })?;
            tags.extend(parsed);
            continue;
        }
        let syntax = || InputError::TagSyntax { arg: arg.clone() };
        let (key, value) = if let Some(rest) = text.strip_prefix("key=") {
            match rest.split_once(",value=") {
                Some((k, v)) => (k, v),
                None => (rest, ""),
            }
        } else if let Some(rest) = text.strip_prefix("value=") {
            let (v, k) = rest.split_once(",key=").ok_or_else(syntax)?;
            (k, v)
        } else {
            return Err(syntax());
        };
        tags.push(Tag {
            key: key.to_string(),
            value: value.to_string(),
        });
    }
    check_tags(&tags).map_err(|e| InputError::TagRule { why: e.0 })?;
    Ok(tags)
}

/// Reads env files by Docker's rules (`docker run --env-file`), in order: a later file's
/// value wins over an earlier one's.
///
/// Per line: leading blanks are dropped; empty lines and lines starting with `#` are
/// skipped; `NAME=VALUE` sets NAME to VALUE taken literally (quotes and trailing blanks
/// included); a bare `NAME` takes NAME's value from minifargate's own environment and is
/// skipped when that is unset; a name must not be empty or contain blanks.
pub fn read_env_files(paths: &[impl AsRef<Path>]) -> Result<Vec<KeyValuePair>, InputError> {
    let mut vars: Vec<KeyValuePair> = Vec::new();
    for p in paths {
        let p = p.as_ref();
        let path = p.display().to_string();
        let bytes = std::fs::read(p).map_err(|source| InputError::EnvFileRead {
            path: path.clone(),
            source,
        })?;
        for kv in parse_env_file(&path, &bytes, |k| std::env::var(k).ok())? {
            match vars.iter_mut().find(|e| e.name == kv.name) {
                Some(slot) => *slot = kv,
                None => vars.push(kv),
            }
        }
    }
    Ok(vars)
}

fn parse_env_file(
    path: &str,
    bytes: &[u8],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<KeyValuePair>, InputError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut out = Vec::new();
    for (n, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let err = |why: String| InputError::EnvFileLine {
            path: path.to_string(),
            line: n + 1,
            why,
        };
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|_| err("invalid UTF-8".into()))?;
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = match line.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (line, None),
        };
        if name.is_empty() {
            return Err(err(format!("no variable name in {line:?}")));
        }
        if name.chars().any(char::is_whitespace) {
            return Err(err(format!("variable {name:?} contains whitespace")));
        }
        let Some(value) = value.or_else(|| lookup(name)) else {
            continue;
        };
        out.push(KeyValuePair {
            name: Some(name.to_string()),
            value: Some(value),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[KeyValuePair]) -> Vec<String> {
        v.iter()
            .map(|e| {
                format!(
                    "{}={}",
                    e.name.as_deref().unwrap(),
                    e.value.as_deref().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn env_files_follow_dockers_rules() {
        let text = "\u{feff}# comment\n\n  A=1\nB=\"quoted\" \r\nC==x=\nFROM_ENV\nUNSET\nE=\n";
        let got = parse_env_file("f", text.as_bytes(), |k| {
            (k == "FROM_ENV").then(|| "host".to_string())
        })
        .unwrap();
        assert_eq!(
            pairs(&got),
            ["A=1", "B=\"quoted\" ", "C==x=", "FROM_ENV=host", "E="]
        );
        let e = parse_env_file("f", b"OK=1\nBAD NAME=2\n", |_| None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--env-file f: line 2: variable \"BAD NAME\" contains whitespace"
        );
        let e = parse_env_file("f", b"=2\n", |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1: no variable name"), "{e}");
        assert!(parse_env_file("f", b"A=\xff\n", |_| None).is_err());
    }

    #[test]
    fn later_env_files_win_and_missing_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), "X=1\nY=1\n").unwrap();
        std::fs::write(d.path().join("b"), "Y=2\n").unwrap();
        let got = read_env_files(&[d.path().join("a"), d.path().join("b")]).unwrap();
        assert_eq!(pairs(&got), ["X=1", "Y=2"]);
        let e = read_env_files(&[d.path().join("nope")]).unwrap_err();
        assert!(e.to_string().contains("failed to read --env-file"), "{e}");
    }

    #[test]
    fn tags_in_shorthand_and_json() {
        let got = parse_tags(&[
            "key=team,value=core".into(),
            "value=a,b,key=list".into(),
            "key=empty".into(),
            r#"[{"key":"j","value":"1"}]"#.into(),
        ])
        .unwrap();
        let kv: Vec<_> = got
            .iter()
            .map(|t| format!("{}={}", t.key, t.value))
            .collect();
        assert_eq!(kv, ["team=core", "list=a,b", "empty=", "j=1"]);
        assert!(matches!(
            parse_tags(&["team=core".into()]),
            Err(InputError::TagSyntax { .. })
        ));
        let e = parse_tags(&["key=aws:x,value=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("reserved"), "{e}");
        let many: Vec<String> = (0..51).map(|i| format!("key=k{i},value=v")).collect();
        assert!(
            parse_tags(&many)
                .unwrap_err()
                .to_string()
                .contains("51 tags")
        );
    }
}
