//! The firewall's admin API: a registry's policy, what a lockfile would get through
//! it, its decisions and quarantine queue, its exceptions, and the advisory database.
//! The same services as `gatehouse policy …`, `gatehouse quarantine …` and
//! `gatehouse advisories …`, with the same checks and audit entries.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use gatehouse_npm::packument::iso_time;
use gatehouse_npm::version::Version;
use gatehouse_policy::advisory::import;
use gatehouse_store::{DecisionQuery, DecisionRow, ExceptionRow, Registry, now_millis};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiPath, admin_actor, admin_registry, json_body, parse_query, require_admin};
use crate::app::App;
use crate::http::error::{ApiError, ProblemResult as ApiResult};
use crate::http::extract::{Caller, LimitedBody};
use crate::lockfile_check;
use crate::services::{ExceptionRequest, ServiceError};

/// Names an import read from a request body in its messages and in the import record.
const UPLOAD: &str = "request body";

/// The body, within the configured limit.
async fn read_body(app: &App, headers: &HeaderMap, body: Body) -> ApiResult<Bytes> {
    Ok(crate::http::extract::read_body(headers, body, &app.config.limits).await?)
}

/// A body that must be text (a policy document, a lockfile).
fn text_body(body: Bytes, what: &str) -> ApiResult<String> {
    Ok(String::from_utf8(body.into()).map_err(|_| ApiError::BadRequest(format!("the {what} is not UTF-8 text")))?)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

async fn policy_json(app: &App, registry: &Registry) -> ApiResult<Response> {
    let (document, default) = app.services.policy_document(registry).await?;
    Ok(
        Json(json!({ "registry": registry.name.to_string(), "document": document, "default": default }))
            .into_response(),
    )
}

/// `GET /-/api/v1/registries/{registry}/policy`: the document (the default one when the
/// registry has none of its own).
#[utoipa::path(
    get,
    path = "/-/api/v1/registries/{registry}/policy",
    tag = "firewall",
    summary = "A registry's policy document",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn get_policy(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
) -> ApiResult<Response> {
    let (_, registry) = admin_registry(&app, &caller, &registry).await?;
    policy_json(&app, &registry).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyRequest {
    document: String,
}

/// `PUT /-/api/v1/registries/{registry}/policy` with the TOML document as the body (or
/// `{"document": TOML}` as `application/json`). A document with errors changes nothing.
#[utoipa::path(
    put,
    path = "/-/api/v1/registries/{registry}/policy",
    tag = "firewall",
    summary = "Set a registry's policy (checked first)",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    request_body(content = String, description = "The TOML document (or `{\"document\": TOML}` as JSON)", content_type = "text/plain"),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn set_policy(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    let body = read_body(&app, &headers, body).await?;
    let document = if is_json(&headers) {
        json_body::<PolicyRequest>(
            &body,
            "expected {\"document\": \"TOML policy\"} (or the TOML as the body)",
        )?
        .document
    } else {
        text_body(body, "policy document")?
    };
    app.services
        .set_policy(&actor, &registry, Some(&document))
        .await
        .map_err(|e| match e {
            ServiceError::Invalid(why) => {
                ApiError::BadRequest(format!("{why} (the policy of {} is unchanged)", registry.name))
            }
            other => other.into(),
        })?;
    policy_json(&app, &registry).await
}

/// `DELETE /-/api/v1/registries/{registry}/policy`: back to the default policy.
#[utoipa::path(
    delete,
    path = "/-/api/v1/registries/{registry}/policy",
    tag = "firewall",
    summary = "Go back to the default policy",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn reset_policy(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    app.services.set_policy(&actor, &registry, None).await?;
    policy_json(&app, &registry).await
}

/// `POST /-/api/v1/registries/{registry}/policy/check` with a lockfile as the body
/// (package-lock.json, pnpm-lock.yaml, yarn.lock or bun.lock): every version it pins
/// that the registry's policy would not serve (`ok` when none).
#[utoipa::path(
    post,
    path = "/-/api/v1/registries/{registry}/policy/check",
    tag = "firewall",
    summary = "What the policy would hold back of a lockfile",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    request_body(content = String, description = "package-lock.json, pnpm-lock.yaml, yarn.lock or bun.lock", content_type = "text/plain"),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn check_lockfile(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let (_, registry) = admin_registry(&app, &caller, &registry).await?;
    let body = read_body(&app, &headers, body).await?;
    let text = text_body(body, "lockfile")?;
    let lockfile = crate::offload::cpu(text.len(), move || gatehouse_npm::lockfile::parse(&text))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::bad_request)?;
    let report = lockfile_check::check(&app.packuments, &registry, &lockfile, None).await?;
    Ok(Json(report).into_response())
}

fn decision_json(row: &DecisionRow) -> Value {
    json!({
        "package": row.package, "version": row.version, "decision": row.verdict, "would": row.would,
        "rule": row.rule, "reason": row.reason, "decided_at": iso_time(row.decided_at),
        "findings": serde_json::from_str::<Value>(&row.findings).unwrap_or_default(),
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DecisionParams {
    package: Option<String>,
    limit: Option<u32>,
}

const MAX_DECISIONS: u32 = 10_000;

async fn list_decisions(
    app: &App,
    caller: &Caller,
    registry: &str,
    uri: &Uri,
    unreviewed: bool,
    default_limit: u32,
) -> ApiResult<Response> {
    let (_, registry) = admin_registry(app, caller, registry).await?;
    let params: DecisionParams = parse_query(uri)?;
    let query = DecisionQuery {
        package: params.package,
        verdicts: Vec::new(),
        unreviewed,
        limit: params.limit.unwrap_or(default_limit).min(MAX_DECISIONS),
    };
    let decisions: Vec<Value> = app
        .services
        .decisions(&registry, &query)
        .await?
        .iter()
        .map(decision_json)
        .collect();
    Ok(Json(json!({ "decisions": decisions })).into_response())
}

/// `GET /-/api/v1/registries/{registry}/decisions?package=&limit=`: the stored decisions
/// that are not `allow` (audit mode's included), newest first.
#[utoipa::path(
    get,
    path = "/-/api/v1/registries/{registry}/decisions",
    tag = "firewall",
    summary = "Stored policy decisions",
    params(("registry" = String, Path, description = "The registry's name", example = "default"), DecisionParams),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn decisions(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    uri: Uri,
) -> ApiResult<Response> {
    list_decisions(&app, &caller, &registry, &uri, false, 100).await
}

/// `GET /-/api/v1/registries/{registry}/quarantine?package=&limit=`: quarantined
/// versions nobody has reviewed yet.
#[utoipa::path(
    get,
    path = "/-/api/v1/registries/{registry}/quarantine",
    tag = "firewall",
    summary = "Quarantined versions waiting for review",
    params(("registry" = String, Path, description = "The registry's name", example = "default"), DecisionParams),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn quarantine_queue(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    uri: Uri,
) -> ApiResult<Response> {
    list_decisions(&app, &caller, &registry, &uri, true, MAX_DECISIONS).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReviewRequest {
    package: String,
    version: String,
    reason: Option<String>,
}

async fn review(app: &App, caller: &Caller, registry: &str, body: &[u8], approve: bool) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(app, caller, registry).await?;
    let request: ReviewRequest = json_body(body, "expected {\"package\": NAME, \"version\": VERSION, \"reason\"?}")?;
    Version::parse(&request.version).map_err(ApiError::bad_request)?;
    let spec = format!("{}@{}", request.package, request.version);
    let reason = request.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    app.services.review(&actor, &registry, &spec, approve, reason).await?;
    Ok(Json(json!({ "ok": true })).into_response())
}

/// `POST /-/api/v1/registries/{registry}/quarantine/approve` with
/// `{package, version, reason?}`: the version is served from now on.
#[utoipa::path(
    post,
    path = "/-/api/v1/registries/{registry}/quarantine/approve",
    tag = "firewall",
    summary = "Approve a quarantined version",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    request_body = ReviewRequest,
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn quarantine_approve(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    review(&app, &caller, &registry, &body, true).await
}

/// `POST /-/api/v1/registries/{registry}/quarantine/reject` with
/// `{package, version, reason?}`: the version is blocked.
#[utoipa::path(
    post,
    path = "/-/api/v1/registries/{registry}/quarantine/reject",
    tag = "firewall",
    summary = "Reject a quarantined version",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    request_body = ReviewRequest,
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn quarantine_reject(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    review(&app, &caller, &registry, &body, false).await
}

fn exception_json(row: &ExceptionRow, now: i64) -> Value {
    json!({
        "id": row.id, "package": row.package, "range": row.range, "rule": row.rule,
        "expires_at": iso_time(row.expires_at), "expired": row.expires_at <= now,
        "reason": row.reason, "created_by": row.created_by, "created_at": iso_time(row.created_at),
    })
}

/// `GET /-/api/v1/registries/{registry}/exceptions`: expired ones included (marked).
#[utoipa::path(
    get,
    path = "/-/api/v1/registries/{registry}/exceptions",
    tag = "firewall",
    summary = "A registry's policy exceptions",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn list_exceptions(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
) -> ApiResult<Response> {
    let (_, registry) = admin_registry(&app, &caller, &registry).await?;
    let now = now_millis();
    let exceptions: Vec<Value> = app
        .services
        .exceptions(&registry)
        .await?
        .iter()
        .map(|row| exception_json(row, now))
        .collect();
    Ok(Json(json!({ "exceptions": exceptions })).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ExceptionBody {
    /// `NAME@RANGE`.
    package: String,
    rule: String,
    /// A duration from now (`7d`) or an RFC 3339 time.
    expires: String,
    reason: String,
}

/// `POST /-/api/v1/registries/{registry}/exceptions` with
/// `{package: "NAME@RANGE", rule, expires, reason}`.
#[utoipa::path(
    post,
    path = "/-/api/v1/registries/{registry}/exceptions",
    tag = "firewall",
    summary = "Add a policy exception",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    request_body = ExceptionBody,
    responses((status = 201, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn add_exception(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    let request: ExceptionBody = json_body(
        &body,
        "expected {\"package\": \"NAME@RANGE\", \"rule\": RULE, \"expires\": \"7d\" or RFC 3339, \"reason\": TEXT}",
    )?;
    let row = app
        .services
        .add_exception(
            &actor,
            &registry,
            &ExceptionRequest {
                spec: &request.package,
                rule: &request.rule,
                expires: &request.expires,
                reason: &request.reason,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(exception_json(&row, now_millis()))).into_response())
}

/// `DELETE /-/api/v1/registries/{registry}/exceptions/{id}`
#[utoipa::path(
    delete,
    path = "/-/api/v1/registries/{registry}/exceptions/{id}",
    tag = "firewall",
    summary = "Remove a policy exception",
    params(("registry" = String, Path, description = "The registry's name", example = "default"), ("id" = i64, Path, description = "The exception's number")),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn remove_exception(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath((registry, id)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::NotFound(format!("registry {} has no exception {id:?}", registry.name)))?;
    let removed = app.services.remove_exception(&actor, &registry, id).await?;
    Ok(Json(json!({ "ok": true, "removed": exception_json(&removed, now_millis()) })).into_response())
}

/// `GET /-/api/v1/advisories`: the size of the advisory database and its last import.
#[utoipa::path(
    get,
    path = "/-/api/v1/advisories",
    tag = "advisories",
    summary = "The advisory database: size and last import",
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn advisory_stats(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Response> {
    require_admin(&caller)?;
    let stats = app.services.advisory_stats().await?;
    let last_import = stats.last_import.map(|last| {
        json!({
            "imported_at": iso_time(last.imported_at), "source": last.source, "replaced": last.replaced,
            "added": last.summary.added, "updated": last.summary.updated, "unchanged": last.summary.unchanged,
            "removed": last.summary.removed, "skipped": last.summary.skipped,
        })
    });
    Ok(Json(json!({
        "advisories": stats.advisories,
        "packages": stats.packages,
        "newest_modified": stats.newest_modified.map(iso_time),
        "last_import": last_import,
    }))
    .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ImportParams {
    #[serde(default)]
    replace: bool,
}

/// `POST /-/api/v1/advisories/import?replace=true|false` with OSV data as the body (a
/// record, a JSON array of records, or a zip of them). All or nothing: a malformed
/// import changes nothing. With `replace`, the database becomes exactly this import.
#[utoipa::path(
    post,
    path = "/-/api/v1/advisories/import",
    tag = "advisories",
    summary = "Import OSV advisories (JSON or a zip)",
    params(ImportParams),
    request_body(content = Vec<u8>, description = "OSV records as JSON, or a zip of them", content_type = "application/octet-stream"),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn import_advisories(
    State(app): State<Arc<App>>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let actor = admin_actor(&caller)?;
    let params: ImportParams = parse_query(&uri)?;
    let body = read_body(&app, &headers, body).await?;
    let read = tokio::task::spawn_blocking(move || import::import_bytes(&body, UPLOAD))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::BadRequest(format!("{e} (the advisory database is unchanged)")))?;
    let summary = app
        .services
        .import_advisories(
            &actor,
            &read.advisories,
            read.skipped.len() as u64,
            UPLOAD,
            params.replace,
        )
        .await?;
    let skipped: Vec<Value> = read
        .skipped
        .iter()
        .map(|s| json!({ "id": s.id, "why": s.why, "source": s.source }))
        .collect();
    Ok(Json(json!({
        "imported": read.advisories.len(),
        "added": summary.added,
        "updated": summary.updated,
        "unchanged": summary.unchanged,
        "removed": summary.removed,
        "skipped": skipped,
        "ignored": read.ignored,
    }))
    .into_response())
}
