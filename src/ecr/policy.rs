//! Repository policies (Set/Get/DeleteRepositoryPolicy): an IAM resource policy's text,
//! validated as ECR refuses a bad one, and evaluated for what a box without IAM can mean
//! by it (docs/registry.md "Repository policies"): whether a pull **without
//! credentials** is allowed. A statement allows it when its `Effect` is `Allow`, its
//! `Principal` is `"*"` (or `{"AWS": "*"}`), its `Action` covers the pull's action
//! (`ecr:BatchGetImage` for a manifest, `ecr:GetDownloadUrlForLayer` for a blob,
//! `ecr:ListImages` for the tag list; IAM's `*` and `?` wildcards) and it has no
//! `Condition` (not evaluated here: such a statement allows nothing anonymous); a `Deny`
//! statement for `"*"` covering the action wins. Every other statement (a named account,
//! role or service) is stored and answered, not evaluated: the box has no IAM
//! principals, and a caller with a token may do everything anyway.
//! Ref: ECR user guide, "Private repository policies" and "Repository policy examples";
//! IAM "Policy elements reference".

use serde_json::Value;

/// What ECR answers a policy it refuses (`InvalidParameterException`).
pub const INVALID: &str = "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'";

/// Why a policy text is refused (the message says it after ECR's words).
pub fn validate(text: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{INVALID}: {why}"));
    if text.len() > 10240 {
        return bad("the policy is longer than 10240 characters");
    }
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return bad(&format!("not JSON ({e})")),
    };
    let Some(obj) = v.as_object() else {
        return bad("not a JSON object");
    };
    for k in obj.keys() {
        if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
            return bad(&format!("unknown element {k:?}"));
        }
    }
    if let Some(ver) = obj.get("Version")
        && !matches!(ver.as_str(), Some("2012-10-17" | "2008-10-17"))
    {
        return bad("Version must be \"2012-10-17\" or \"2008-10-17\"");
    }
    let Some(statements) = statements(&v).filter(|s| !s.is_empty()) else {
        return bad("no Statement");
    };
    for s in statements {
        let Some(s) = s.as_object() else {
            return bad("a Statement that is not an object");
        };
        for k in s.keys() {
            if !matches!(
                k.as_str(),
                "Sid"
                    | "Effect"
                    | "Principal"
                    | "NotPrincipal"
                    | "Action"
                    | "NotAction"
                    | "Condition"
                    | "Resource"
                    | "NotResource"
            ) {
                return bad(&format!("unknown statement element {k:?}"));
            }
        }
        if !matches!(
            s.get("Effect").and_then(Value::as_str),
            Some("Allow" | "Deny")
        ) {
            return bad("a statement's Effect must be Allow or Deny");
        }
        if !s.contains_key("Principal") && !s.contains_key("NotPrincipal") {
            return bad("a statement without a Principal (a resource policy names one)");
        }
        let actions = match (s.get("Action"), s.get("NotAction")) {
            (Some(a), None) | (None, Some(a)) => strings(a),
            _ => None,
        };
        let Some(actions) = actions.filter(|a| !a.is_empty()) else {
            return bad("a statement needs Action (or NotAction): a string or a list of strings");
        };
        for a in actions {
            if a != "*" && !a.to_ascii_lowercase().starts_with("ecr:") {
                return bad(&format!(
                    "action {a:?}: a repository policy names ECR's actions (ecr:…)"
                ));
            }
        }
    }
    Ok(())
}

fn statements(v: &Value) -> Option<Vec<&Value>> {
    match v.get("Statement")? {
        Value::Array(a) => Some(a.iter().collect()),
        o @ Value::Object(_) => Some(vec![o]),
        _ => None,
    }
}

/// A string or a list of strings.
fn strings(v: &Value) -> Option<Vec<&str>> {
    match v {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(a) => a.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// IAM's wildcard match (`*` any run, `?` one character), case-insensitive as IAM
/// compares action names.
fn wildcard(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (
        pattern.to_ascii_lowercase().chars().collect(),
        s.to_ascii_lowercase().chars().collect(),
    );
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether the statement's principal is everyone.
fn everyone(s: &Value) -> bool {
    match s.get("Principal") {
        Some(Value::String(p)) => p == "*",
        Some(Value::Object(o)) => o
            .get("AWS")
            .and_then(strings)
            .is_some_and(|a| a.contains(&"*")),
        _ => false,
    }
}

fn covers(s: &Value, action: &str) -> bool {
    match (s.get("Action"), s.get("NotAction")) {
        (Some(a), _) => strings(a).is_some_and(|a| a.iter().any(|p| wildcard(p, action))),
        (None, Some(n)) => strings(n).is_some_and(|n| !n.iter().any(|p| wildcard(p, action))),
        _ => false,
    }
}

/// Whether the policy lets a caller without credentials do `action` (`ecr:BatchGetImage`
/// …): an `Allow` for everyone covering it, without a condition, and no `Deny` for
/// everyone covering it.
pub fn allows_anonymous(text: &str, action: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    let Some(statements) = statements(&v) else {
        return false;
    };
    let effect = |s: &Value| s.get("Effect").and_then(Value::as_str).map(str::to_string);
    let denied = statements.iter().any(|s| {
        effect(s).as_deref() == Some("Deny")
            && (everyone(s) || s.get("NotPrincipal").is_some())
            && covers(s, action)
    });
    let allowed = statements.iter().any(|s| {
        effect(s).as_deref() == Some("Allow")
            && everyone(s)
            && covers(s, action)
            && s.get("Condition").is_none()
    });
    allowed && !denied
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The user guide's "Allow public pull" style statement (ECR user guide, "Private
    /// repository policy examples": any principal, the pull actions).
    const PUBLIC_PULL: &str = r#"{
      "Version": "2012-10-17",
      "Statement": [{
        "Sid": "AllowPull",
        "Effect": "Allow",
        "Principal": "*",
        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
      }]
    }"#;

    #[test]
    fn an_allow_for_everyone_lets_a_pull_without_credentials() {
        validate(PUBLIC_PULL).unwrap();
        assert!(allows_anonymous(PUBLIC_PULL, "ecr:BatchGetImage"));
        assert!(allows_anonymous(PUBLIC_PULL, "ecr:GetDownloadUrlForLayer"));
        assert!(!allows_anonymous(PUBLIC_PULL, "ecr:ListImages"));
        assert!(!allows_anonymous(PUBLIC_PULL, "ecr:PutImage"));
        // Wildcards, a single statement object, {"AWS": "*"}.
        let all =
            r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": "ecr:*"}}"#;
        validate(all).unwrap();
        assert!(allows_anonymous(all, "ecr:BatchGetImage"));
        let batch = r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "ecr:Batch?etImage"}]}"#;
        assert!(allows_anonymous(batch, "ecr:BatchGetImage"));
    }

    #[test]
    fn named_principals_conditions_and_denies_allow_nothing_anonymous() {
        let named = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
          "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "ecr:*"}]}"#;
        validate(named).unwrap();
        assert!(!allows_anonymous(named, "ecr:BatchGetImage"));
        let cond = r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "ecr:*",
          "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-1"}}}]}"#;
        validate(cond).unwrap();
        assert!(!allows_anonymous(cond, "ecr:BatchGetImage"));
        let deny = r#"{"Statement": [
          {"Effect": "Allow", "Principal": "*", "Action": "ecr:*"},
          {"Effect": "Deny", "Principal": "*", "Action": "ecr:GetDownloadUrlForLayer"}]}"#;
        assert!(allows_anonymous(deny, "ecr:BatchGetImage"));
        assert!(!allows_anonymous(deny, "ecr:GetDownloadUrlForLayer"));
    }

    #[test]
    fn bad_policies_are_refused_with_ecr_s_words() {
        for (text, why) in [
            ("not json", "not JSON"),
            ("[]", "not a JSON object"),
            (r#"{"Version": "2012-10-17"}"#, "no Statement"),
            (r#"{"Statement": []}"#, "no Statement"),
            (
                r#"{"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "ecr:*"}]}"#,
                "Effect",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Action": "ecr:*"}]}"#,
                "Principal",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}]}"#,
                "s3:GetObject",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Principal": "*"}]}"#,
                "Action",
            ),
            (
                r#"{"Version": "2020-01-01", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "ecr:*"}]}"#,
                "Version",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "ecr:*", "Bogus": 1}]}"#,
                "Bogus",
            ),
        ] {
            let e = validate(text).unwrap_err();
            assert!(e.starts_with(INVALID) && e.contains(why), "{text}: {e}");
        }
    }
}
