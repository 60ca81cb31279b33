//! Who may use a registry and where it pulls from, and tokens: the API's side of
//! the web app's Upstreams and Access tabs, the Users and Tokens pages, and of
//! `gatehouse registry upstream|grant|revoke|default-role` and `gatehouse token`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_npm::packument::iso_time;
use gatehouse_store::registry::Role;
use gatehouse_store::{Token, now_millis};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiPath, ApiQuery, admin_actor, admin_registry, json_body, require_admin};
use crate::app::App;
use crate::auth::cidr::Cidr;
use crate::auth::token::TokenSpec;
use crate::http::error::{ApiError, ProblemResult as ApiResult};
use crate::http::extract::{Caller, LimitedBody};
use crate::services::{TokenRef, UpstreamChange, UpstreamRequest, parse_expiry};
use crate::upstream::spec::UpstreamSpec;

fn spec(raw: &str) -> ApiResult<UpstreamSpec> {
    Ok(UpstreamSpec::parse(raw).map_err(ApiError::bad_request)?)
}

/// `GET /-/api/v1/registries/{registry}/upstreams`: in the order they are asked.
#[utoipa::path(
    get,
    path = "/-/api/v1/registries/{registry}/upstreams",
    tag = "registries",
    summary = "A registry's upstreams, in the order they are asked",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn list_upstreams(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
) -> ApiResult<Response> {
    let (_, registry) = admin_registry(&app, &caller, &registry).await?;
    let upstreams: Vec<Value> = app
        .meta
        .upstreams(registry.id)
        .await?
        .into_iter()
        .map(|u| {
            // Credentials are never shown, only whether there are any.
            let auth = match (&u.token, &u.basic_auth) {
                (Some(_), _) => "token",
                (None, Some(_)) => "basic",
                (None, None) => "none",
            };
            json!({ "spec": u.spec, "internal": u.internal, "auth": auth })
        })
        .collect();
    Ok(Json(json!({ "upstreams": upstreams })).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamBody {
    /// `npmjs`, an npm registry URL, or `registry:OTHER`.
    spec: String,
    /// A bearer token for a remote registry.
    token: Option<String>,
    /// `user:password` for a remote registry.
    basic: Option<String>,
    /// Trusted with packages flagged internal.
    #[serde(default)]
    internal: bool,
}

/// `POST /-/api/v1/registries/{registry}/upstreams` with `{spec, token?, basic?, internal?}`: asked last.
#[utoipa::path(
    post,
    path = "/-/api/v1/registries/{registry}/upstreams",
    tag = "registries",
    summary = "Add an upstream, asked after the others",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    request_body = UpstreamBody,
    responses((status = 201, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn add_upstream(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    let request: UpstreamBody = json_body(&body, "expected {spec, token?, basic?, internal?}")?;
    let upstream = UpstreamRequest {
        spec: spec(&request.spec)?,
        token: request.token,
        basic_auth: request.basic,
        internal: request.internal,
    };
    app.services.add_upstream(&actor, &registry, &upstream).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "ok": true, "spec": upstream.spec.to_string() })),
    )
        .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UpstreamQuery {
    /// The upstream, as listed.
    spec: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamChangeBody {
    /// `earlier` or `later`: one place up or down the list.
    #[serde(rename = "move")]
    direction: Option<String>,
    internal: Option<bool>,
}

/// `PATCH /-/api/v1/registries/{registry}/upstreams?spec=` with `{move?, internal?}`.
#[utoipa::path(
    patch,
    path = "/-/api/v1/registries/{registry}/upstreams",
    tag = "registries",
    summary = "Move an upstream up or down the list, or change its internal flag",
    params(("registry" = String, Path, description = "The registry's name", example = "default"), UpstreamQuery),
    request_body = UpstreamChangeBody,
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn change_upstream(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    ApiQuery(query): ApiQuery<UpstreamQuery>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    let spec = spec(&query.spec)?;
    let request: UpstreamChangeBody =
        json_body(&body, "expected {\"move\": \"earlier\"|\"later\", \"internal\": bool}")?;
    let mut changes = Vec::new();
    match request.direction.as_deref() {
        None => {}
        Some("earlier") => changes.push(UpstreamChange::Earlier),
        Some("later") => changes.push(UpstreamChange::Later),
        Some(other) => {
            return Err(ApiError::BadRequest(format!("move must be \"earlier\" or \"later\", not {other:?}")).into());
        }
    }
    if let Some(internal) = request.internal {
        changes.push(UpstreamChange::Internal(internal));
    }
    if changes.is_empty() {
        return Err(ApiError::BadRequest("nothing to change: give move or internal".into()).into());
    }
    for change in changes {
        app.services.change_upstream(&actor, &registry, &spec, change).await?;
    }
    Ok(Json(json!({ "ok": true })).into_response())
}

/// `DELETE /-/api/v1/registries/{registry}/upstreams?spec=`
#[utoipa::path(
    delete,
    path = "/-/api/v1/registries/{registry}/upstreams",
    tag = "registries",
    summary = "Remove an upstream",
    params(("registry" = String, Path, description = "The registry's name", example = "default"), UpstreamQuery),
    responses((status = 204, description = "Done"), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn remove_upstream(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
    ApiQuery(query): ApiQuery<UpstreamQuery>,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    app.services
        .remove_upstream(&actor, &registry, &spec(&query.spec)?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /-/api/v1/registries/{registry}/members`: the default role and every grant.
#[utoipa::path(
    get,
    path = "/-/api/v1/registries/{registry}/members",
    tag = "registries",
    summary = "Who has which role in a registry, and the default role",
    params(("registry" = String, Path, description = "The registry's name", example = "default")),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn list_members(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(registry): ApiPath<String>,
) -> ApiResult<Response> {
    let (_, registry) = admin_registry(&app, &caller, &registry).await?;
    let members: Vec<Value> = app
        .meta
        .grants()
        .await?
        .into_iter()
        .filter(|g| g.registry == registry.name)
        .map(|g| json!({ "user": g.user, "role": g.role.as_str() }))
        .collect();
    Ok(Json(json!({
        "default_role": registry.default_role.map_or("none", Role::as_str),
        "members": members,
    }))
    .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    /// `read`, `publish` or `admin`.
    role: String,
}

/// `PUT /-/api/v1/registries/{registry}/members/{user}` with `{role}`.
#[utoipa::path(
    put,
    path = "/-/api/v1/registries/{registry}/members/{user}",
    tag = "registries",
    summary = "Grant a user a role in a registry",
    params(("registry" = String, Path, description = "The registry's name", example = "default"), ("user" = String, Path, description = "The user name")),
    request_body = RoleBody,
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn grant(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath((registry, user)): ApiPath<(String, String)>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    let request: RoleBody = json_body(&body, "expected {\"role\": \"read\"|\"publish\"|\"admin\"}")?;
    let role = Role::parse(&request.role).map_err(ApiError::bad_request)?;
    let user = app.services.user(&user).await?;
    app.services
        .set_member_role(&actor, &registry, &user, Some(role))
        .await?;
    Ok(Json(json!({ "ok": true, "user": user.name, "role": role.as_str() })).into_response())
}

/// `DELETE /-/api/v1/registries/{registry}/members/{user}`: back to the default role.
#[utoipa::path(
    delete,
    path = "/-/api/v1/registries/{registry}/members/{user}",
    tag = "registries",
    summary = "Take a user's role in a registry away",
    params(("registry" = String, Path, description = "The registry's name", example = "default"), ("user" = String, Path, description = "The user name")),
    responses((status = 204, description = "Done"), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn revoke(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath((registry, user)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let (actor, registry) = admin_registry(&app, &caller, &registry).await?;
    let user = app.services.user(&user).await?;
    app.services.set_member_role(&actor, &registry, &user, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn token_json(token: &Token) -> Value {
    json!({
        "key": token.key, "token": token.display, "user": token.user.name, "name": token.name,
        "readonly": token.readonly, "cidr_whitelist": token.cidr_whitelist, "registries": token.registries,
        "packages": token.packages, "created": iso_time(token.created_at),
        "last_used": token.last_used_at.map(iso_time), "expires": token.expires_at.map(iso_time),
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokensQuery {
    /// Only this user's tokens.
    user: Option<String>,
}

/// `GET /-/api/v1/tokens[?user=]`: tokens in use (not revoked, not expired).
#[utoipa::path(
    get,
    path = "/-/api/v1/tokens",
    tag = "users",
    summary = "Tokens in use, with their limits",
    params(TokensQuery),
    responses((status = 200, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn list_tokens(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<TokensQuery>,
) -> ApiResult<Response> {
    require_admin(&caller)?;
    let tokens = match &query.user {
        Some(name) => app.meta.tokens_of(app.services.user(name).await?.id).await?,
        None => app.meta.all_tokens().await?,
    };
    let now = now_millis();
    let tokens: Vec<Value> = tokens
        .iter()
        .filter(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|at| at > now))
        .map(token_json)
        .collect();
    Ok(Json(json!({ "tokens": tokens })).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    user: String,
    name: Option<String>,
    /// Read-only unless `false`.
    readonly: Option<bool>,
    #[serde(default)]
    cidr_whitelist: Vec<String>,
    #[serde(default)]
    registries: Vec<String>,
    /// Package name patterns (`@acme/*`).
    #[serde(default)]
    packages: Vec<String>,
    /// `30d`, `12h`, or an RFC 3339 time; none: never.
    expires: Option<String>,
}

/// `POST /-/api/v1/tokens`: a token for a user (read-only unless `readonly: false`); its
/// value is in this answer only.
#[utoipa::path(
    post,
    path = "/-/api/v1/tokens",
    tag = "users",
    summary = "Create a token for a user; its value is shown in this answer only",
    request_body = NewTokenBody,
    responses((status = 201, description = "Done", body = serde_json::Value), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn create_token(
    State(app): State<Arc<App>>,
    caller: Caller,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let actor = admin_actor(&caller)?;
    let request: NewTokenBody = json_body(
        &body,
        "expected {user, name?, readonly?, cidr_whitelist?, registries?, packages?, expires?}",
    )?;
    for range in &request.cidr_whitelist {
        Cidr::parse(range).map_err(ApiError::bad_request)?;
    }
    for registry in &request.registries {
        let name = gatehouse_store::registry::RegistryName::parse(registry).map_err(ApiError::bad_request)?;
        app.services.registry(&name).await?;
    }
    let expires_at = request
        .expires
        .as_deref()
        .map(|text| parse_expiry(text, now_millis()))
        .transpose()?;
    let user = app.services.user(&request.user).await?;
    let minted = app
        .services
        .issue_token(
            &actor,
            &user,
            TokenSpec {
                name: request.name,
                readonly: request.readonly.unwrap_or(true),
                cidr_whitelist: request.cidr_whitelist,
                registries: request.registries,
                packages: request.packages,
                expires_at,
                published_by: None,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "key": minted.key, "token": minted.secret, "user": user.name })),
    )
        .into_response())
}

/// `DELETE /-/api/v1/tokens/{key}`
#[utoipa::path(
    delete,
    path = "/-/api/v1/tokens/{key}",
    tag = "users",
    summary = "Revoke a token",
    params(("key" = String, Path, description = "The token's key, as listed")),
    responses((status = 204, description = "Done"), (status = 400, response = super::openapi::BadRequest), (status = 401, response = super::openapi::Unauthorized), (status = 403, response = super::openapi::Forbidden), (status = 404, response = super::openapi::NotFound))
)]
pub async fn revoke_token(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiPath(key): ApiPath<String>,
) -> ApiResult<Response> {
    let actor = admin_actor(&caller)?;
    app.services
        .revoke_token(&actor, None, TokenRef::Key(&key), "revoked through the admin API")
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
