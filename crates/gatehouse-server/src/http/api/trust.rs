//! Trusted publishing in the admin API: a package's trust configurations.
//! `GET|POST /-/api/v1/registries/{registry}/trust?package=NAME`,
//! `DELETE /-/api/v1/registries/{registry}/trust/{id}?package=NAME`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_npm::name::PackageName;
use gatehouse_npm::trust::TrustRule;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiPath, ApiQuery, admin_registry, json_body};
use crate::app::App;
use crate::http::error::{ApiError, ProblemResult as ApiResult};
use crate::http::extract::{Caller, LimitedBody};
use crate::services::TrustConfig;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PackageQuery {
    package: String,
}

fn package(query: &PackageQuery) -> ApiResult<PackageName> {
    Ok(PackageName::parse(&query.package).map_err(ApiError::bad_request)?)
}

fn config_json(config: &TrustConfig) -> Value {
    let mut out = config.to_npm();
    if let Some(obj) = out.as_object_mut() {
        obj.insert("owner".into(), json!(config.row.created_by));
    }
    out
}

#[utoipa::path(
    get,
    path = "/-/api/v1/registries/{registry}/trust",
    tag = "trust",
    summary = "A package's trusted-publishing configurations",
    params(("registry" = String, Path, description = "The registry's name", example = "default"), PackageQuery),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn list_trust(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    ApiQuery(query): ApiQuery<PackageQuery>,
) -> ApiResult<Response> {
    let (_, registry) = admin_registry(&app, &caller, &registry).await?;
    let name = package(&query)?;
    let configs = app.services.trust_configs(&registry, &name).await?;
    let trust: Vec<Value> = configs.iter().map(config_json).collect();
    Ok(Json(json!({ "package": name.to_string(), "trust": trust })).into_response())
}

/// The body is a configuration as `npm trust` posts it, plus an optional `owner`: the
/// user whose token the exchanges mint (default: the package's first maintainer,
/// else the calling administrator, who then becomes its first maintainer).
#[utoipa::path(
    post,
    path = "/-/api/v1/registries/{registry}/trust",
    tag = "trust",
    summary = "Trust a CI workflow to publish a package",
    params(("registry" = String, Path, description = "The registry's name", example = "default"), PackageQuery),
    request_body(content = serde_json::Value, description = "A configuration as `npm trust` posts it, plus an optional `owner`", content_type = "application/json"),
    responses((status = 201, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn add_trust(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    ApiQuery(query): ApiQuery<PackageQuery>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    let name = package(&query)?;
    let body: Value = json_body(
        &body,
        "expected {\"type\": \"github\", \"claims\": {\"repository\": \"OWNER/REPO\", \"workflow_ref\": {\"file\": \"release.yml\"}}}",
    )?;
    let rule = TrustRule::parse_npm(&body).map_err(ApiError::bad_request)?;
    let owner = match body.get("owner").and_then(Value::as_str) {
        Some(owner) => owner.to_owned(),
        None => match app
            .meta
            .package(registry.id, &name)
            .await?
            .and_then(|r| r.maintainers.first().cloned())
        {
            Some(first) => first.name,
            None => actor.name.clone().unwrap_or_default(),
        },
    };
    let creator = app.services.user(&owner).await?;
    let added = app
        .services
        .add_trust(&actor, &registry, &name, &creator, std::slice::from_ref(&rule))
        .await?;
    let trust: Vec<Value> = added.iter().map(config_json).collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({ "package": name.to_string(), "trust": trust })),
    )
        .into_response())
}

#[utoipa::path(
    delete,
    path = "/-/api/v1/registries/{registry}/trust/{id}",
    tag = "trust",
    summary = "Remove a trust configuration",
    params(("registry" = String, Path, description = "The registry's name", example = "default"), ("id" = String, Path, description = "The configuration's id"), PackageQuery),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn remove_trust(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath((registry, id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<PackageQuery>,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    let name = package(&query)?;
    app.services.remove_trust(&actor, &registry, &name, &id).await?;
    Ok(Json(json!({ "ok": true })).into_response())
}
