//! The admin REST API under `/-/api/v1/`. Callers authenticate like npm clients
//! (Bearer token or Basic); only administrators with a read-write credential may
//! use it. Errors use the same JSON shape as the registry protocol.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, ApiResult};
use crate::app::App;
use crate::auth::Principal;
use crate::npm::name::PackageName;
use crate::npm::version::Version;
use crate::registry::RegistryName;
use crate::upstream::push::{self, PushError};

async fn require_admin(app: &App, headers: &HeaderMap, peer: SocketAddr) -> ApiResult<Principal> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let principal = app
        .auth
        .authenticate(authorization, peer.ip())
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the admin API needs an administrator's token".into()))?;
    if !principal.user.is_admin || principal.is_readonly() {
        return Err(ApiError::Forbidden(
            "the admin API is for administrators with a read-write token".into(),
        ));
    }
    Ok(principal)
}

/// `GET /-/api/v1/registries`
pub async fn list_registries(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let result: ApiResult<Response> = async {
        require_admin(&app, &headers, peer).await?;
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(registry): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let result: ApiResult<Response> = async {
        let principal = require_admin(&app, &headers, peer).await?;
        let request: PushRequest = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("expected {{package, version, to}}: {e}")))?;
        let name = RegistryName::parse(&registry).map_err(|e| ApiError::NotFound(e.to_string()))?;
        if !principal.may_use_registry(name.as_str()) {
            return Err(ApiError::Forbidden(format!(
                "this token is not valid for registry \"{name}\""
            )));
        }
        let from = app
            .meta
            .registry(&name)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no registry named \"{name}\"")))?;
        let package = PackageName::parse(&request.package).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let version = Version::parse(&request.version).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let summary = push::push(&app, &from, &package, &version, &request.to, &principal.user.name)
            .await
            .map_err(|e| match e {
                PushError::NotFound(m) => ApiError::NotFound(m),
                PushError::Invalid(m) => ApiError::BadRequest(m),
                PushError::Refused(_) => ApiError::Conflict(e.to_string()),
                PushError::Upstream(u) => ApiError::BadGateway(u.to_string()),
                PushError::Internal(m) => ApiError::internal(m),
            })?;
        Ok((StatusCode::OK, Json(json!({ "ok": true, "message": summary }))).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
