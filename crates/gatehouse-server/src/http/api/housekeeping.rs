//! The API's side of `gatehouse check`, `gatehouse gc` and `gatehouse package
//! internal`: the same functions on the same stores, answered as JSON.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use gatehouse_npm::name::PackageName;
use gatehouse_policy::document::Age;
use gatehouse_store::housekeeping;
use serde::Deserialize;
use serde_json::json;

use super::{ApiPath, admin_registry, json_body, require_admin};
use crate::app::App;
use crate::http::error::{ApiError, ProblemResult as ApiResult};
use crate::http::extract::{Caller, LimitedBody};

/// `GET /-/api/v1/check`: every version's tarball read and hashed, and the orphans.
#[utoipa::path(
    get,
    path = "/-/api/v1/check",
    tag = "housekeeping",
    summary = "Check that every version's tarball is stored and sound; list orphans",
    responses((status = 200, description = "Done (`clean` says whether every version has a sound tarball)", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn check(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Response> {
    require_admin(&caller)?;
    let report = housekeeping::check(&app.meta, &app.blobs).await?;
    let references = |list: &[gatehouse_store::BlobReference]| {
        list.iter()
            .map(|r| json!({ "registry": r.registry, "package": r.package, "version": r.version, "blob": r.blob.sha512_hex }))
            .collect::<Vec<_>>()
    };
    Ok(Json(json!({
        "clean": report.is_clean(),
        "versions": report.versions,
        "blobs": report.blobs,
        "missing": references(&report.missing),
        "corrupt": references(&report.corrupt),
        "orphans": report.orphans.iter().map(|k| k.to_hex()).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GcRequest {
    /// Say what would be removed, remove nothing.
    #[serde(default)]
    dry_run: bool,
    /// Orphans touched within this long are kept (`1h` by default).
    grace: Option<String>,
}

/// `POST /-/api/v1/gc` with `{dry_run?, grace?}`: removes tarballs no version refers to.
#[utoipa::path(
    post,
    path = "/-/api/v1/gc",
    tag = "housekeeping",
    summary = "Remove tarballs no version refers to, older than a grace period",
    request_body = GcRequest,
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn gc(State(app): State<Arc<App>>, caller: Caller, LimitedBody(body): LimitedBody) -> ApiResult<Response> {
    require_admin(&caller)?;
    let request: GcRequest = if body.is_empty() {
        GcRequest {
            dry_run: false,
            grace: None,
        }
    } else {
        json_body(&body, "expected {\"dry_run\": bool, \"grace\": \"1h\"}")?
    };
    let grace = match request.grace.as_deref() {
        None => Duration::from_secs(3600),
        Some(text) => {
            let age = Age::parse(text).map_err(ApiError::bad_request)?;
            Duration::from_millis(u64::try_from(age.millis).unwrap_or(0))
        }
    };
    let report = housekeeping::gc(&app.meta, &app.blobs, grace, request.dry_run).await?;
    Ok(Json(json!({
        "dry_run": request.dry_run,
        "removed": report.removed.iter().map(|k| k.to_hex()).collect::<Vec<_>>(),
        "kept_young": report.young,
    }))
    .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageChange {
    /// Never resolved from upstreams not trusted with internal packages.
    internal: bool,
}

/// `PATCH /-/api/v1/registries/{registry}/packages/{name}` with `{internal}`.
#[utoipa::path(
    patch,
    path = "/-/api/v1/registries/{registry}/packages/{name}",
    tag = "registries",
    summary = "Flag a package internal, or not",
    params(("registry" = String, Path, description = "The registry's name", example = "default"), ("name" = String, Path, description = "The package name")),
    request_body = PackageChange,
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn change_package(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath((registry, name)): ApiPath<(String, String)>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    let change: PackageChange = json_body(&body, "expected {\"internal\": true|false}")?;
    let name = PackageName::parse(&name).map_err(ApiError::bad_request)?;
    app.services
        .set_internal(&actor, &registry, &name, change.internal)
        .await?;
    Ok(Json(json!({ "ok": true, "package": name.to_string(), "internal": change.internal })).into_response())
}
