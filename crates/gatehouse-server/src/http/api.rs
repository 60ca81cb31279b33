//! The admin REST API under `/-/api/v1/`. Callers authenticate like npm clients
//! (Bearer token or Basic); only administrators with a read-write credential may
//! use it. Errors are `application/problem+json` (`http::error::Problem`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_npm::name::PackageName;
use gatehouse_npm::packument::iso_time;
use gatehouse_npm::version::Version;
use gatehouse_store::registry::RegistryName;
use gatehouse_store::{AuditAction, AuditQuery, Registry};
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, Problem, ProblemResult as ApiResult};
use super::extract::{Caller, LimitedBody};
use crate::access;
use crate::app::App;
use crate::auth::Principal;
use crate::services::{Actor, Creation, NewUser, UpstreamRequest};
use crate::upstream::spec::UpstreamSpec;

mod firewall;
mod housekeeping;
pub mod openapi;
mod registry_access;
mod trust;
pub use firewall::{
    add_exception, advisory_stats, check_lockfile, decisions, get_policy, import_advisories, list_exceptions,
    quarantine_approve, quarantine_queue, quarantine_reject, remove_exception, reset_policy, set_policy,
};
pub use housekeeping::{change_package, check, gc};
pub use registry_access::{
    add_upstream, change_upstream, create_token, grant, list_members, list_tokens, list_upstreams, remove_upstream,
    revoke, revoke_token,
};
pub use trust::{add_trust, list_trust, remove_trust};

/// A path's parameters; a bad one (not UTF-8 once decoded) is a problem+json 400.
pub struct ApiPath<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Problem> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(e) => Err(Problem(ApiError::BadRequest(e.body_text()))),
        }
    }
}

/// A query string; a wrong one is a problem+json 400 saying what was wrong.
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Problem> {
        parse_query(&parts.uri).map(ApiQuery)
    }
}

/// The query string as `T`; a wrong one is a 400 saying what was wrong. Handlers that
/// check the caller first call this after; the others take [`ApiQuery`].
fn parse_query<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> ApiResult<T> {
    Ok(axum::extract::Query::<T>::try_from_uri(uri)
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?
        .0)
}

/// A page of a list: `?cursor=&limit=` (100 by default, at most 1,000). The answer's
/// `next` is the cursor of the page after it, `null` on the last page. Cursors are
/// opaque; a list read page by page shows every item once, also while items are added.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    cursor: Option<String>,
    limit: Option<u32>,
}

impl Page {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, 1000) as usize
    }

    /// The page of `items` (sorted by `key`, ascending) after the cursor, and the next cursor.
    fn of<T>(&self, items: Vec<T>, key: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
        let mut rest: Vec<T> = match &self.cursor {
            Some(cursor) => items.into_iter().filter(|item| key(item) > *cursor).collect(),
            None => items,
        };
        let more = rest.len() > self.limit();
        rest.truncate(self.limit());
        let next = more.then(|| rest.last().map(&key)).flatten();
        (rest, next)
    }
}

/// A JSON request body; a wrong one is refused saying what was expected.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> ApiResult<T> {
    Ok(serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("{expected}: {e}")))?)
}

/// An administrator with a read-write credential, or the refusal.
fn require_admin(caller: &Caller) -> ApiResult<&Principal> {
    Ok(access::require_admin(caller.principal()?)?)
}

/// Any other path under `/-/api/`.
pub async fn no_such_endpoint(uri: axum::http::Uri) -> Problem {
    Problem(ApiError::NotFound(format!(
        "{} is no endpoint of the admin API; /-/api/v1/openapi.json lists them",
        uri.path()
    )))
}

/// `GET /-/api/v1/registries?cursor=&limit=`
#[utoipa::path(
    get,
    path = "/-/api/v1/registries",
    tag = "registries",
    summary = "Every registry, with its URL, visibility and upstreams",
    params(Page),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn list_registries(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Response> {
    require_admin(&caller)?;
    let mut all = app.meta.registries().await?;
    all.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    let (registries, next) = page.of(all, |r| r.name.to_string());
    let mut out = Vec::new();
    for registry in registries {
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
    Ok(Json(json!({ "registries": out, "next": next })).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PushRequest {
    package: String,
    version: String,
    to: String,
}

/// `POST /-/api/v1/registries/{registry}/push` with `{package, version, to}`.
#[utoipa::path(
    post,
    path = "/-/api/v1/registries/{registry}/push",
    tag = "registries",
    summary = "Push a version to an upstream (promotion)",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    request_body = PushRequest,
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn push_version(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let (actor, from) = admin_registry(&app, &caller, &registry).await?;
    let request: PushRequest = json_body(&body, "expected {package, version, to}")?;
    let package = PackageName::parse(&request.package).map_err(ApiError::bad_request)?;
    let version = Version::parse(&request.version).map_err(ApiError::bad_request)?;
    let summary = app
        .promotion
        .push(&from, &package, &version, &request.to, &actor)
        .await?;
    Ok((StatusCode::OK, Json(json!({ "ok": true, "message": summary }))).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ClaimRequest {
    pattern: String,
}

/// The registry named in the path, for an administrator whose token may use it.
async fn admin_registry(app: &App, caller: &Caller, registry: &str) -> ApiResult<(Actor, Registry)> {
    let principal = require_admin(caller)?;
    let name = RegistryName::parse(registry).map_err(|e| ApiError::NotFound(e.to_string()))?;
    access::check_token_registry(principal, &name)?;
    let registry = app.services.registry(&name).await?;
    let actor = Actor {
        name: Some(principal.user.name.clone()),
        client_addr: Some(caller.ip),
    };
    Ok((actor, registry))
}

/// `GET /-/api/v1/registries/{registry}/claims`
#[utoipa::path(
    get,
    path = "/-/api/v1/registries/{registry}/claims",
    tag = "registries",
    summary = "Names claimed for a registry",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn list_claims(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
) -> ApiResult<Response> {
    let (_, registry) = admin_registry(&app, &caller, &registry).await?;
    let claims: Vec<_> = app
        .services
        .claims(&registry)
        .await?
        .into_iter()
        .map(|c| json!({ "pattern": c.pattern, "claimed_by": c.claimed_by, "claimed_at": iso_time(c.claimed_at) }))
        .collect();
    Ok(Json(json!({ "claims": claims })).into_response())
}

/// `POST /-/api/v1/registries/{registry}/claims` with `{pattern}`: a name or `@scope/*`.
#[utoipa::path(
    post,
    path = "/-/api/v1/registries/{registry}/claims",
    tag = "registries",
    summary = "Claim a name or a scope (@scope/*)",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    request_body = ClaimRequest,
    responses((status = 201, description = "Done", body = serde_json::Value), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn add_claim(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    let request: ClaimRequest = json_body(&body, "expected {\"pattern\": \"name or @scope/*\"}")?;
    app.services.claim(&actor, &registry, &request.pattern).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "ok": true, "pattern": request.pattern })),
    )
        .into_response())
}

/// `DELETE /-/api/v1/registries/{registry}/claims/{pattern}` (the pattern URL-encoded).
#[utoipa::path(
    delete,
    path = "/-/api/v1/registries/{registry}/claims/{pattern}",
    tag = "registries",
    summary = "Give up a claim",
    params(("registry" = String, Path, description = "The registry's name", example = "default"), ("pattern" = String, Path, description = "The claimed name or @scope/*, URL-encoded")),
    responses((status = 204, description = "Done"), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn remove_claim(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath((registry, pattern)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    app.services.unclaim(&actor, &registry, &pattern).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An administrator, as the audit log names them.
fn admin_actor(caller: &Caller) -> ApiResult<Actor> {
    let principal = require_admin(caller)?;
    Ok(Actor {
        name: Some(principal.user.name.clone()),
        client_addr: Some(caller.ip),
    })
}

/// `GET /-/api/v1/users?cursor=&limit=`
#[utoipa::path(
    get,
    path = "/-/api/v1/users",
    tag = "users",
    summary = "Every user",
    params(Page),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn list_users(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Response> {
    require_admin(&caller)?;
    let mut all = app.meta.users().await?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let (users, next) = page.of(all, |u| u.name.clone());
    let users: Vec<_> = users
        .into_iter()
        .map(|u| {
            json!({
                "name": u.name, "email": u.email, "admin": u.is_admin, "disabled": u.disabled,
                "created": iso_time(u.created_at),
            })
        })
        .collect();
    Ok(Json(json!({ "users": users, "next": next })).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    disabled: Option<bool>,
    admin: Option<bool>,
    password: Option<String>,
}

/// `PATCH /-/api/v1/users/{name}` with any of `{disabled, admin, password}`.
#[utoipa::path(
    patch,
    path = "/-/api/v1/users/{name}",
    tag = "users",
    summary = "Disable or enable a user, make them an administrator, set a password",
    params(("name" = String, Path, description = "The user name")),
    request_body = UserChange,
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn change_user(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let actor = admin_actor(&caller)?;
    let change: UserChange = json_body(&body, "expected any of {\"disabled\", \"admin\", \"password\"}")?;
    let user = app.services.user(&name).await?;
    if let Some(password) = change.password {
        app.services.set_password(&actor, &user, password).await?;
    }
    if let Some(admin) = change.admin {
        app.services.set_user_admin(&actor, &user, admin).await?;
    }
    if let Some(disabled) = change.disabled {
        app.services.set_user_disabled(&actor, &user, disabled).await?;
    }
    Ok(Json(json!({ "ok": true })).into_response())
}

/// `DELETE /-/api/v1/users/{name}`
#[utoipa::path(
    delete,
    path = "/-/api/v1/users/{name}",
    tag = "users",
    summary = "Delete a user with their tokens and grants",
    params(("name" = String, Path, description = "The user name")),
    responses((status = 204, description = "Done"), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn delete_user(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    let actor = admin_actor(&caller)?;
    let user = app.services.user(&name).await?;
    app.services.delete_user(&actor, &user).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /-/api/v1/users/{name}/unlock`: clears a failed-login lockout.
#[utoipa::path(
    post,
    path = "/-/api/v1/users/{name}/unlock",
    tag = "users",
    summary = "Clear a failed-login lockout",
    params(("name" = String, Path, description = "The user name")),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn unlock_user(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    let actor = admin_actor(&caller)?;
    let user = app.services.user(&name).await?;
    app.services.unlock_user(&actor, &user).await?;
    Ok(Json(json!({ "ok": true })).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    registry: Option<String>,
    user: Option<String>,
    action: Option<String>,
    /// RFC 3339.
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    /// The `next` of the page before.
    cursor: Option<String>,
}

/// `GET /-/api/v1/audit?registry=&user=&action=&since=&until=&limit=&cursor=`, newest first.
#[utoipa::path(
    get,
    path = "/-/api/v1/audit",
    tag = "audit",
    summary = "Audit entries, newest first",
    params(AuditParams),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn audit(State(app): State<Arc<App>>, caller: Caller, uri: axum::http::Uri) -> ApiResult<Response> {
    require_admin(&caller)?;
    let params: AuditParams = parse_query(&uri)?;
    let time = |raw: Option<String>, name: &str| {
        raw.map(|raw| {
            chrono::DateTime::parse_from_rfc3339(&raw)
                .map(|t| t.timestamp_millis())
                .map_err(|_| ApiError::BadRequest(format!("{name}={raw:?} is not an RFC 3339 time")))
        })
        .transpose()
    };
    let action = params
        .action
        .map(|raw| {
            AuditAction::parse(&raw).ok_or_else(|| ApiError::BadRequest(format!("unknown audit action {raw:?}")))
        })
        .transpose()?;
    let query = AuditQuery {
        registry: params.registry,
        actor: params.user,
        action,
        since: time(params.since, "since")?,
        until: time(params.until, "until")?,
        before: params
            .cursor
            .map(|raw| {
                raw.parse::<i64>()
                    .map_err(|_| ApiError::BadRequest(format!("cursor={raw:?} is no cursor this list gave out")))
            })
            .transpose()?,
        limit: params.limit.unwrap_or(100).clamp(1, 1000) + 1,
    };
    let page_size = query.limit as usize - 1;
    let mut found = app.meta.audit_entries(&query).await?;
    let next = (found.len() > page_size).then(|| {
        found.truncate(page_size);
        found.last().map(|(_, e)| e.id.to_string())
    });
    let entries: Vec<_> = found
        .into_iter()
        .map(|(at, e)| {
            json!({
                "at": iso_time(at), "actor": e.actor, "action": e.action, "registry": e.registry,
                "package": e.package, "version": e.version, "detail": e.detail, "client_addr": e.client_addr,
            })
        })
        .collect();
    Ok(Json(json!({ "entries": entries, "next": next.flatten() })).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryChange {
    public: Option<bool>,
    /// A new name: the registry is served at `/r/{name}/` from then on.
    name: Option<String>,
    /// What every signed-in user may do without a grant: `none`, `read` or `publish`.
    default_role: Option<String>,
}

/// `PATCH /-/api/v1/registries/{registry}` with any of `{public, default_role, name}`.
#[utoipa::path(
    patch,
    path = "/-/api/v1/registries/{registry}",
    tag = "registries",
    summary = "Make a registry public or private, set its default role, or rename it",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    request_body = RegistryChange,
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn change_registry(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    let change: RegistryChange = json_body(
        &body,
        "expected any of {\"public\": true|false, \"name\": NEW, \"default_role\": \"none\"|\"read\"|\"publish\"}",
    )?;
    if let Some(role) = change.default_role {
        let role = gatehouse_store::registry::Role::parse_or_none(&role).map_err(ApiError::bad_request)?;
        app.services.set_default_role(&actor, &registry, role).await?;
    }
    if let Some(public) = change.public {
        app.services.set_registry_public(&actor, &registry, public).await?;
    }
    if let Some(name) = change.name {
        let new = RegistryName::parse(&name).map_err(ApiError::bad_request)?;
        app.services.rename_registry(&actor, &registry, &new).await?;
    }
    Ok(Json(json!({ "ok": true })).into_response())
}

/// `DELETE /-/api/v1/registries/{registry}`: the registry and its packages.
#[utoipa::path(
    delete,
    path = "/-/api/v1/registries/{registry}",
    tag = "registries",
    summary = "Delete a registry and its packages",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    responses((status = 204, description = "Done"), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn delete_registry(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    app.services.delete_registry(&actor, &registry).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /-/api/v1/registries/{registry}/packages`: the packages the registry holds.
#[utoipa::path(
    get,
    path = "/-/api/v1/registries/{registry}/packages",
    tag = "registries",
    summary = "The packages a registry holds",
    params(("registry" = String, Path, description = "The registry's name", example = "default"), Page),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn list_packages(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Response> {
    let (_, registry) = admin_registry(&app, &caller, &registry).await?;
    let mut all = app.services.packages(&registry).await?;
    all.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    let (packages, next) = page.of(all, |p| p.name.to_string());
    let packages: Vec<_> = packages
        .into_iter()
        .map(|p| {
            json!({
                "name": p.name.to_string(), "latest": p.latest, "versions": p.versions,
                "origin": p.origin.as_str(), "internal": p.internal,
            })
        })
        .collect();
    Ok(Json(json!({ "packages": packages, "next": next })).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SetupParams {
    client: Option<String>,
    scope: Option<String>,
}

/// `GET /-/api/v1/registries/{registry}/setup[?client=npm|pnpm|yarn|berry|bun|unity|ci]`:
/// the Setup tab's snippets (`gatehouse_npm::setup`); they read the token from `NPM_TOKEN`.
#[utoipa::path(
    get,
    path = "/-/api/v1/registries/{registry}/setup",
    tag = "registries",
    summary = "The Setup tab's client snippets",
    params(("registry" = String, Path, description = "The registry's name", example = "default"), SetupParams),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn registry_setup(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    ApiQuery(params): ApiQuery<SetupParams>,
) -> ApiResult<Response> {
    use gatehouse_npm::setup::{Client, SetupContext, snippets};
    let (_, registry) = admin_registry(&app, &caller, &registry).await?;
    let clients = match params.client.as_deref() {
        None => Client::ALL.to_vec(),
        Some(slug) => vec![Client::from_slug(slug).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown client {slug:?}: use one of npm, pnpm, yarn, berry, bun, unity, ci"
            ))
        })?],
    };
    let registry_url = format!("{}/", app.registry_base(&registry));
    let context = SetupContext {
        registry_url: &registry_url,
        registry: registry.name.as_str(),
        scope: params.scope.as_deref(),
        token: None,
        user: None,
    };
    let sections: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let blocks: Vec<_> = snippets(client, &context)
                .into_iter()
                .map(|s| json!({ "file": s.file, "note": s.note, "text": s.text }))
                .collect();
            json!({ "client": client.slug(), "heading": client.heading(), "snippets": blocks })
        })
        .collect();
    Ok(Json(json!({ "registry_url": registry_url, "sections": sections })).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    version: Option<String>,
}

/// `DELETE /-/api/v1/registries/{registry}/packages/{name}[?version=V]`: a package, or
/// one version, unpublished by an administrator (the numbers stay taken).
#[utoipa::path(
    delete,
    path = "/-/api/v1/registries/{registry}/packages/{name}",
    tag = "registries",
    summary = "Delete a package, or one version (as npm unpublish)",
    params(("registry" = String, Path, description = "The registry's name", example = "default"), ("name" = String, Path, description = "The package name"), DeleteParams),
    responses((status = 204, description = "Done"), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn delete_package(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath((registry, name)): ApiPath<(String, String)>,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    let params: DeleteParams = parse_query(&uri)?;
    let name = PackageName::parse(&name).map_err(ApiError::bad_request)?;
    let record = app.services.package_record(&registry, &name).await?;
    match params.version {
        Some(version) => {
            app.services
                .delete_version(&actor, &registry, &record, &version)
                .await?
        }
        None => app.services.unpublish_package(&actor, &registry, &record, None).await?,
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PurgeRequest {
    package: String,
}

/// `POST /-/api/v1/registries/{registry}/purge` with `{package}`: drops the stored
/// upstream copies of its document.
#[utoipa::path(
    post,
    path = "/-/api/v1/registries/{registry}/purge",
    tag = "registries",
    summary = "Drop a package's stored upstream copies",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    request_body = PurgeRequest,
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn purge_package(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    let request: PurgeRequest = json_body(&body, "expected {\"package\": NAME}")?;
    let name = PackageName::parse(&request.package).map_err(ApiError::bad_request)?;
    let purged = app.services.purge_upstream_copies(&actor, &registry, &name).await?;
    Ok(Json(json!({ "ok": true, "purged": purged })).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloneRequest {
    name: String,
}

/// `POST /-/api/v1/registries/{registry}/clone` with `{name}`.
#[utoipa::path(
    post,
    path = "/-/api/v1/registries/{registry}/clone",
    tag = "registries",
    summary = "Copy a registry with its settings and packages",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    request_body = CloneRequest,
    responses((status = 201, description = "Done", body = serde_json::Value), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn clone_registry(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    let request: CloneRequest = json_body(&body, "expected {\"name\": NEW}")?;
    let name = RegistryName::parse(&request.name).map_err(ApiError::bad_request)?;
    let clone = app.services.clone_registry(&actor, &registry, &name).await?;
    let url = format!("{}/", app.registry_base(&clone));
    Ok((
        StatusCode::CREATED,
        Json(json!({ "ok": true, "name": name.to_string(), "url": url })),
    )
        .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    name: String,
    password: String,
    email: Option<String>,
    #[serde(default)]
    admin: bool,
}

/// `POST /-/api/v1/users` with `{name, password, email?, admin?}`.
#[utoipa::path(
    post,
    path = "/-/api/v1/users",
    tag = "users",
    summary = "Create a user",
    request_body = NewUserRequest,
    responses((status = 201, description = "Done", body = serde_json::Value), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn create_user(
    State(app): State<Arc<App>>,
    caller: Caller,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let actor = admin_actor(&caller)?;
    let request: NewUserRequest = json_body(&body, "expected {\"name\", \"password\", \"email\"?, \"admin\"?}")?;
    let new = NewUser {
        name: &request.name,
        email: request.email.as_deref(),
        password: request.password,
        admin: request.admin,
    };
    let user = app.services.create_user(&actor, new, Creation::ByAdministrator).await?;
    Ok((StatusCode::CREATED, Json(json!({ "ok": true, "name": user.name }))).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRegistryRequest {
    name: String,
    #[serde(default)]
    public: bool,
    /// `npmjs`, an npm registry URL, or `registry:OTHER`, in the order they are asked.
    #[serde(default)]
    upstreams: Vec<String>,
}

/// `POST /-/api/v1/registries` with `{name, public?, upstreams?}`.
#[utoipa::path(
    post,
    path = "/-/api/v1/registries",
    tag = "registries",
    summary = "Create a registry",
    request_body = NewRegistryRequest,
    responses((status = 201, description = "Done", body = serde_json::Value), (status = 400, response = openapi::BadRequest), (status = 401, response = openapi::Unauthorized), (status = 403, response = openapi::Forbidden), (status = 404, response = openapi::NotFound))
)]
pub async fn create_registry(
    State(app): State<Arc<App>>,
    caller: Caller,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let actor = admin_actor(&caller)?;
    let request: NewRegistryRequest = json_body(&body, "expected {\"name\", \"public\"?, \"upstreams\"?: [...]}")?;
    let name = RegistryName::parse(&request.name).map_err(ApiError::bad_request)?;
    let upstreams = request
        .upstreams
        .iter()
        .map(|raw| UpstreamSpec::parse(raw).map(UpstreamRequest::plain))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::bad_request)?;
    let registry = app
        .services
        .create_registry(&actor, &name, request.public, &upstreams)
        .await?;
    let url = format!("{}/", app.registry_base(&registry));
    Ok((
        StatusCode::CREATED,
        Json(json!({ "ok": true, "name": name.to_string(), "url": url })),
    )
        .into_response())
}
