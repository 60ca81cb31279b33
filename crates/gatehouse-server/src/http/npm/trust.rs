//! Trusted publishing over npm's protocol: `npm trust github|gitlab|list|revoke`
//! (`/-/package/{name}/trust[/{id}]`) and the exchange of a CI job's OIDC token
//! (`POST /-/npm/v1/oidc/token/exchange/package/{name}`, under a registry and at the
//! host root, where npm sends it).

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use gatehouse_npm::name::PackageName;
use gatehouse_npm::packument::iso_time;
use gatehouse_npm::trust::TrustRule;
use gatehouse_store::Registry;
use gatehouse_store::registry::Role;

use super::Ctx;
use crate::app::App;
use crate::http::error::{ApiError, ApiResult};
use crate::services::Actor;

/// Who may see and change a package's trust: its maintainers and the registry's
/// admins; for a name nobody publishes yet, the registry's admins.
async fn require_trust_manager(ctx: &Ctx, name: &PackageName) -> ApiResult<()> {
    ctx.check_token_package(name)?;
    match ctx.app.meta.package(ctx.registry.id, name).await? {
        Some(record) if !record.maintainers.is_empty() => {
            ctx.require_maintainer(&record)?;
        }
        _ => {
            ctx.require_writer()?;
            if ctx.role != Some(Role::Admin) {
                return Err(ApiError::Forbidden(format!(
                    "\"{name}\" has no maintainers in registry \"{}\" yet, so only its administrators may let CI \
                     publish it; ask one to run the trust command (they become its first maintainer)",
                    ctx.registry.name
                )));
            }
        }
    }
    Ok(())
}

/// `GET /-/package/{name}/trust`.
pub async fn list(ctx: &Ctx, name: &PackageName) -> ApiResult<Response> {
    require_trust_manager(ctx, name).await?;
    let configs = ctx.app.services.trust_configs(&ctx.registry, name).await?;
    let body: Vec<Value> = configs.iter().map(|c| c.to_npm()).collect();
    Ok(axum::Json(body).into_response())
}

/// `POST /-/package/{name}/trust`: what `npm trust github|gitlab` sends.
pub async fn add(ctx: &Ctx, name: &PackageName, body: &Bytes) -> ApiResult<Response> {
    require_trust_manager(ctx, name).await?;
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("a trust configuration is JSON: {e}")))?;
    let rules = TrustRule::parse_npm_body(&body).map_err(ApiError::bad_request)?;
    let creator = &ctx.require_user()?.user;
    let added = ctx
        .app
        .services
        .add_trust(&ctx.actor(), &ctx.registry, name, creator, &rules)
        .await?;
    let body: Vec<Value> = added.iter().map(|c| c.to_npm()).collect();
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// `DELETE /-/package/{name}/trust/{id}`: `npm trust revoke`.
pub async fn remove(ctx: &Ctx, name: &PackageName, id: &str) -> ApiResult<Response> {
    require_trust_manager(ctx, name).await?;
    ctx.app
        .services
        .remove_trust(&ctx.actor(), &ctx.registry, name, id)
        .await?;
    Ok(axum::Json(json!({})).into_response())
}

/// `POST …/-/npm/v1/oidc/token/exchange/package/{name}`, in `registry` or, at the host
/// root (`None`), in the registry whose trust configuration matches. The OIDC token
/// comes as the bearer credential: it is never taken for a Gatehouse token.
pub async fn exchange(
    app: &Arc<App>,
    registry: Option<&Registry>,
    name: &PackageName,
    headers: &HeaderMap,
    actor: Actor,
) -> ApiResult<Response> {
    let jwt = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "send the OIDC ID token your CI issued as the bearer credential (Authorization: Bearer <token>)".into(),
            )
        })?;
    let ttl = app.config.oidc.token_ttl.millis;
    let exchanged = app
        .services
        .exchange_oidc_token(&app.issuers, ttl, &actor, registry, name, jwt)
        .await
        .map_err(|e| {
            tracing::info!(pkg.name = %name, client = ?actor.client_addr, error = %e, "OIDC token exchange refused");
            e
        })?;
    tracing::info!(
        registry.name = %exchanged.registry.name,
        pkg.name = %name,
        repository = exchanged.published_by.repository.as_deref().unwrap_or_default(),
        workflow = exchanged.published_by.workflow.as_deref().unwrap_or_default(),
        "OIDC token exchanged for a publish token"
    );
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "token": exchanged.secret,
            "expires": iso_time(exchanged.expires_at),
            "registry": exchanged.registry.name.to_string(),
        })),
    )
        .into_response())
}
