//! GetAuthorizationToken: a token under the registry's key, and the endpoint to log in to.

use super::{Result, check_registry, server};
use crate::ecr::Registry;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GetAuthorizationTokenRequest {
    #[serde(default)]
    registry_ids: Vec<String>,
}

pub(super) fn get_authorization_token(
    r: &Registry,
    req: GetAuthorizationTokenRequest,
    now: u64,
) -> Result<Value> {
    for id in &req.registry_ids {
        check_registry(r, Some(id))?;
    }
    let tokens = crate::ecr::tokens::Tokens::load_or_create(r.dir())
        .map_err(server("read the registry's token key"))?;
    let t = tokens.issue(now);
    Ok(json!({"authorizationData": [{
        "authorizationToken": t.authorization_token,
        "expiresAt": t.expires_at,
        "proxyEndpoint": format!("https://{}", r.host()),
    }]}))
}
