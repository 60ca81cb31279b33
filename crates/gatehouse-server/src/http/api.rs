//! The admin REST API under `/-/api/v1/`. Callers authenticate like npm clients
//! (Bearer token or Basic); only administrators with a read-write credential may
//! use it. Errors use the same JSON shape as the registry protocol.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_npm::name::PackageName;
use gatehouse_npm::version::Version;
use gatehouse_store::registry::RegistryName;
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, ApiResult};
use super::extract::Caller;
use crate::access;
use crate::app::App;
use crate::auth::Principal;

/// An administrator with a read-write credential, or the refusal.
fn require_admin(caller: &Caller) -> ApiResult<&Principal> {
    Ok(access::require_admin(caller.principal()?)?)
}

/// `GET /-/api/v1/registries`
pub async fn list_registries(State(app): State<Arc<App>>, caller: Caller) -> Response {
    let result: ApiResult<Response> = async {
        require_admin(&caller)?;
        let mut out = Vec::new();
        for registry in app.meta.registries().await? {
            let upstreams: Vec<String> = app
                .meta
                .upstreams(registry.id)
                .await?
                .into_iter()
                .map(|u| u.spec)
                .collect();
            out.push(json!({
                "name": registry.name.to_string(),
                "url": format!("{}/", app.registry_base(&registry)),
                "public": registry.public_read,
                "upstreams": upstreams,
            }));
        }
        Ok(Json(json!({ "registries": out })).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
pub struct PushRequest {
    package: String,
    version: String,
    to: String,
}

/// `POST /-/api/v1/registries/{registry}/push` with `{package, version, to}`.
pub async fn push_version(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(registry): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let result: ApiResult<Response> = async {
        let principal = require_admin(&caller)?;
        let request: PushRequest = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("expected {{package, version, to}}: {e}")))?;
        let name = RegistryName::parse(&registry).map_err(|e| ApiError::NotFound(e.to_string()))?;
        access::check_token_registry(principal, &name)?;
        let from = app
            .meta
            .registry(&name)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no registry named \"{name}\"")))?;
        let package = PackageName::parse(&request.package).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let version = Version::parse(&request.version).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let summary = app
            .promotion
            .push(&from, &package, &version, &request.to, &principal.user.name)
            .await?;
        Ok((StatusCode::OK, Json(json!({ "ok": true, "message": summary }))).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
