//! `npm token list|create|revoke` (`/-/npm/v1/tokens`).

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use gatehouse_npm::packument::iso_time;
use gatehouse_store::{Token, now_millis};

use super::Ctx;
use crate::auth::cidr::Cidr;
use crate::auth::token::TokenSpec;
use crate::http::error::{ApiError, ApiResult};
use crate::services::TokenRef;

/// npm 11 sends granular-token fields; older clients send `readonly`.
#[derive(Deserialize)]
struct CreateBody {
    password: Option<String>,
    name: Option<String>,
    #[serde(default)]
    readonly: bool,
    packages_and_scopes_permission: Option<String>,
    #[serde(default)]
    cidr_whitelist: Vec<String>,
    /// Days until expiry.
    expires: Option<u32>,
}

fn token_json(token: &Token) -> Value {
    json!({
        // npm prints `{token}…` itself: without this trim it shows `gth_abcdef……`.
        "token": token.display.trim_end_matches('…'),
        "key": token.key,
        "name": token.name,
        "readonly": token.readonly,
        "cidr_whitelist": (!token.cidr_whitelist.is_empty()).then_some(&token.cidr_whitelist),
        "created": iso_time(token.created_at),
        "updated": iso_time(token.last_used_at.unwrap_or(token.created_at)),
        "expires": token.expires_at.map(iso_time),
    })
}

pub async fn list(ctx: &Ctx) -> ApiResult<Response> {
    let principal = ctx.require_user()?;
    let tokens = ctx.app.meta.tokens_of(principal.user.id).await?;
    let objects: Vec<Value> = tokens.iter().map(token_json).collect();
    // npm follows `urls.next` and crashes without `urls`.
    Ok(axum::Json(json!({ "objects": objects, "total": objects.len(), "urls": {} })).into_response())
}

pub async fn create(ctx: &Ctx, body: &Bytes) -> ApiResult<Response> {
    let principal = ctx.require_writer()?;
    let body: CreateBody =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid token request: {e}")))?;
    let password = body
        .password
        .ok_or_else(|| ApiError::WrongPassword("creating a token needs your password".into()))?;
    ctx.app
        .auth
        .by_password(&principal.user.name, &password, ctx.client_ip)
        .await?;
    for cidr in &body.cidr_whitelist {
        Cidr::parse(cidr).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    let readonly = body.readonly || body.packages_and_scopes_permission.as_deref() == Some("read-only");
    let expires_at = body.expires.map(|days| now_millis() + i64::from(days) * 86_400_000);
    // Tokens made through a registry's URL work on that registry only.
    let minted = ctx
        .app
        .services
        .issue_token(
            &ctx.actor(),
            &principal.user,
            TokenSpec {
                name: body.name.clone(),
                readonly,
                cidr_whitelist: body.cidr_whitelist.clone(),
                registries: vec![ctx.registry.name.to_string()],
                packages: Vec::new(),
                expires_at,
            },
        )
        .await?;
    let now = iso_time(now_millis());
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "token": minted.secret,
            "key": minted.key,
            "name": body.name,
            "readonly": readonly,
            "cidr_whitelist": (!body.cidr_whitelist.is_empty()).then_some(&body.cidr_whitelist),
            "created": now,
            "updated": now,
            "expires": expires_at.map(iso_time),
        })),
    )
        .into_response())
}

pub async fn revoke(ctx: &Ctx, key: &str) -> ApiResult<Response> {
    let principal = ctx.require_writer()?;
    ctx.app
        .services
        .revoke_token(
            &ctx.actor(),
            Some(principal.user.id),
            TokenRef::Key(key),
            "npm token revoke",
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
