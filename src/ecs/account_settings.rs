//! Account settings: ListAccountSettings, PutAccountSetting, PutAccountSettingDefault,
//! stored per principal (the account default under principal `""`). `serve` verifies
//! each request's SigV4 signature against its access keys, but has no IAM: every key acts
//! as the account's root user, which is the caller here. What this host acts on:
//! `containerInsights` is the setting a new cluster starts with (as in ECS); the others are
//! stored and returned.

use super::{Ecs, EcsError, EcsResult, page};
use crate::taskdef::AwsContext;
use serde::{Deserialize, Serialize};

/// Every setting name and the values it takes, with ECS's default. Ref: ecs.json
/// `SettingName`, `PutAccountSettingRequest.value` ("enabled, disabled, enhanced, on, and
/// off"; fargateTaskRetirementWaitPeriod 0, 7 or 14); the defaults as documented in
/// docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-account-settings.html.
const SETTINGS: &[(&str, &[&str], &str)] = &[
    ("serviceLongArnFormat", &["enabled", "disabled"], "enabled"),
    ("taskLongArnFormat", &["enabled", "disabled"], "enabled"),
    (
        "containerInstanceLongArnFormat",
        &["enabled", "disabled"],
        "enabled",
    ),
    ("awsvpcTrunking", &["enabled", "disabled"], "disabled"),
    (
        "containerInsights",
        &["enhanced", "enabled", "disabled"],
        "disabled",
    ),
    ("fargateFIPSMode", &["enabled", "disabled"], "disabled"),
    ("tagResourceAuthorization", &["on", "off"], "on"),
    ("fargateTaskRetirementWaitPeriod", &["0", "7", "14"], "7"),
    ("guardDutyActivate", &["on", "off"], "off"),
    (
        "defaultLogDriverMode",
        &["blocking", "non-blocking"],
        "non-blocking",
    ),
    ("fargateEventWindows", &["enabled", "disabled"], "disabled"),
];

/// Settings AWS manages (read-only). Ref: ecs.json `Setting.type` ("Currently, the
/// guardDutyActivate account setting is the only one Amazon Web Services manages").
const AWS_MANAGED: &str = "guardDutyActivate";

/// ecs.json `Setting`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Setting {
    pub name: String,
    pub value: String,
    pub principal_arn: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutAccountSettingRequest {
    pub name: String,
    pub value: String,
    pub principal_arn: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutAccountSettingDefaultRequest {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAccountSettingsRequest {
    pub name: Option<String>,
    pub value: Option<String>,
    pub principal_arn: Option<String>,
    #[serde(default)]
    pub effective_settings: bool,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SettingResponse {
    pub setting: Setting,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAccountSettingsResponse {
    pub settings: Vec<Setting>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// The caller: the account's root user (every access key `serve` accepts is the root
/// user's; there are no IAM users or roles to map a key to).
fn root(ctx: &AwsContext) -> String {
    format!("arn:aws:iam::{}:root", ctx.account_id)
}

fn check(name: &str, value: &str) -> EcsResult<()> {
    let Some((_, values, _)) = SETTINGS.iter().find(|(n, _, _)| *n == name) else {
        return Err(EcsError::invalid(format!(
            "name {name:?}: not an account setting ({})",
            SETTINGS
                .iter()
                .map(|(n, _, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    if name == AWS_MANAGED {
        return Err(EcsError::invalid(format!(
            "{name} is managed by AWS and cannot be changed"
        )));
    }
    if !values.contains(&value) {
        return Err(EcsError::invalid(format!(
            "value {value:?}: {name} takes {}",
            values.join(", ")
        )));
    }
    Ok(())
}

fn setting(name: &str, value: &str, principal: &str) -> Setting {
    Setting {
        name: name.into(),
        value: value.into(),
        principal_arn: principal.into(),
        kind: if name == AWS_MANAGED {
            "aws_managed"
        } else {
            "user"
        }
        .into(),
    }
}

/// PutAccountSetting: for `principalArn`, the caller when absent.
pub fn put_account_setting(
    ecs: &Ecs,
    req: &PutAccountSettingRequest,
) -> EcsResult<SettingResponse> {
    check(&req.name, &req.value)?;
    let ctx = AwsContext::from_env();
    let principal = req.principal_arn.clone().unwrap_or_else(|| root(&ctx));
    let mut store = ecs.open_store()?;
    store
        .put_account_setting(&principal, &req.name, &req.value)
        .map_err(anyhow::Error::from)?;
    Ok(SettingResponse {
        setting: setting(&req.name, &req.value, &principal),
    })
}

/// PutAccountSettingDefault: the account's default, for principals without their own.
pub fn put_account_setting_default(
    ecs: &Ecs,
    req: &PutAccountSettingDefaultRequest,
) -> EcsResult<SettingResponse> {
    check(&req.name, &req.value)?;
    let ctx = AwsContext::from_env();
    let mut store = ecs.open_store()?;
    store
        .put_account_setting("", &req.name, &req.value)
        .map_err(anyhow::Error::from)?;
    Ok(SettingResponse {
        setting: setting(&req.name, &req.value, &root(&ctx)),
    })
}

/// The effective value of setting `name` for `principal`: its own, else the account
/// default, else ECS's.
pub fn effective(ecs: &Ecs, name: &str, principal: Option<&str>) -> EcsResult<String> {
    let ctx = AwsContext::from_env();
    let principal = principal.map_or_else(|| root(&ctx), str::to_string);
    let store = ecs.open_store()?;
    let stored = store.account_settings().map_err(anyhow::Error::from)?;
    Ok(resolve(&stored, name, &principal))
}

fn resolve(stored: &[(String, String, String)], name: &str, principal: &str) -> String {
    let find = |p: &str| {
        stored
            .iter()
            .find(|(sp, n, _)| sp == p && n == name)
            .map(|(_, _, v)| v.clone())
    };
    find(principal)
        .or_else(|| find(""))
        .or_else(|| {
            SETTINGS
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, _, d)| d.to_string())
        })
        .unwrap_or_default()
}

/// ListAccountSettings: the principal's own settings, or with `effectiveSettings` every
/// setting's effective value.
pub fn list_account_settings(
    ecs: &Ecs,
    req: &ListAccountSettingsRequest,
) -> EcsResult<ListAccountSettingsResponse> {
    if let Some(n) = req.name.as_deref()
        && !SETTINGS.iter().any(|(s, _, _)| *s == n)
    {
        return Err(EcsError::invalid(format!(
            "name {n:?}: not an account setting"
        )));
    }
    // Ref: ecs.json `ListAccountSettingsRequest.value`: "You must also specify an account
    // setting name to use this parameter."
    if req.value.is_some() && req.name.is_none() {
        return Err(EcsError::invalid(
            "value: filtering by value needs an account setting name too",
        ));
    }
    let ctx = AwsContext::from_env();
    let principal = req.principal_arn.clone().unwrap_or_else(|| root(&ctx));
    let store = ecs.open_store()?;
    let stored = store.account_settings().map_err(anyhow::Error::from)?;
    let mut out: Vec<Setting> = if req.effective_settings {
        SETTINGS
            .iter()
            .map(|(n, _, _)| setting(n, &resolve(&stored, n, &principal), &principal))
            .collect()
    } else {
        stored
            .iter()
            .filter(|(p, _, _)| *p == principal)
            .map(|(p, n, v)| setting(n, v, p))
            .collect()
    };
    out.retain(|s| {
        req.name.as_deref().is_none_or(|n| s.name == n)
            && req.value.as_deref().is_none_or(|v| s.value == v)
    });
    let (settings, next_token) = page(out, req.max_results, 100, req.next_token.as_deref())?;
    Ok(ListAccountSettingsResponse {
        settings,
        next_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_and_resolved_own_then_default_then_ecs() {
        assert!(check("containerInsights", "enhanced").is_ok());
        assert!(check("containerInsights", "on").is_err());
        assert!(check("fargateTaskRetirementWaitPeriod", "14").is_ok());
        assert!(check("guardDutyActivate", "on").is_err());
        assert!(check("nope", "on").is_err());
        let stored = vec![
            (
                "".to_string(),
                "containerInsights".to_string(),
                "enabled".to_string(),
            ),
            (
                "me".to_string(),
                "awsvpcTrunking".to_string(),
                "enabled".to_string(),
            ),
        ];
        assert_eq!(resolve(&stored, "containerInsights", "me"), "enabled");
        assert_eq!(resolve(&stored, "awsvpcTrunking", "me"), "enabled");
        assert_eq!(resolve(&stored, "awsvpcTrunking", "you"), "disabled");
    }
}
