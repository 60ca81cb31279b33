//! The npm protocol under `/r/{registry}/`: one entry point resolves the registry,
//! the caller and the route, then hands over to a handler by resource.

mod packages;
mod search;
mod tags;
mod tokens;
mod users;
mod writes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::{ApiError, ApiResult};
use crate::app::App;
use crate::auth::Principal;
use crate::npm::name::PackageName;
use crate::npm::route::{self, Route};
use crate::packument_cache::{CacheError, Prepared};
use crate::registry::RegistryName;
use crate::store::{AuditEntry, Registry};

/// Everything a handler knows about the request it serves.
pub struct Ctx {
    pub app: Arc<App>,
    pub registry: Registry,
    pub principal: Option<Principal>,
    pub client_addr: SocketAddr,
    /// `{public}/r/{registry}`: base for tarball and login URLs.
    pub base: String,
}

impl Ctx {
    /// Private registries answer 401 to anonymous callers, so clients ask for credentials.
    pub fn require_read(&self) -> ApiResult<()> {
        if self.registry.public_read || self.principal.is_some() {
            Ok(())
        } else {
            Err(login_required(&self.base))
        }
    }

    pub fn require_user(&self) -> ApiResult<&Principal> {
        self.principal.as_ref().ok_or_else(|| login_required(&self.base))
    }

    /// A caller allowed to change things: logged in, and not with a read-only token.
    pub fn require_writer(&self) -> ApiResult<&Principal> {
        let principal = self.require_user()?;
        if principal.is_readonly() {
            return Err(ApiError::Forbidden(
                "this token is read-only; use a token with publish scope to change packages".into(),
            ));
        }
        Ok(principal)
    }

    /// A writer who maintains `prepared`'s package (admins maintain everything).
    pub fn require_maintainer(&self, prepared: &Prepared) -> ApiResult<&Principal> {
        let principal = self.require_writer()?;
        let name = &principal.user.name;
        if principal.user.is_admin || prepared.record.maintainers.iter().any(|m| &m.name == name) {
            Ok(principal)
        } else {
            Err(ApiError::Forbidden(format!(
                "You do not have permission to change \"{}\". Are you logged in as the correct user?",
                prepared.record.name
            )))
        }
    }

    /// The prepared package, or 404 when it doesn't exist (or is fully unpublished and
    /// `allow_unpublished` is false).
    pub async fn package(&self, name: &PackageName) -> ApiResult<Arc<Prepared>> {
        match self.app.packuments.get(self.registry.id, name, &self.base).await {
            Ok(p) => Ok(p),
            Err(CacheError::Absent) => Err(ApiError::not_found()),
            Err(e) => Err(ApiError::internal(e)),
        }
    }

    /// Like `package`, but `None` when absent (for writes that may create it).
    pub async fn package_if_exists(&self, name: &PackageName) -> ApiResult<Option<Arc<Prepared>>> {
        match self.package(name).await {
            Ok(p) => Ok(Some(p)),
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn audit(
        &self,
        action: &'static str,
        package: Option<&PackageName>,
        version: Option<&str>,
        detail: Option<String>,
    ) {
        self.app
            .audit(AuditEntry {
                actor: self.principal.as_ref().map(|p| p.user.name.clone()),
                action,
                registry: Some(self.registry.name.to_string()),
                package: package.map(ToString::to_string),
                version: version.map(str::to_owned),
                detail,
                client_addr: Some(self.client_addr.ip().to_string()),
            })
            .await;
    }
}

fn login_required(base: &str) -> ApiError {
    ApiError::Unauthorized(format!(
        "authentication required: log in with `npm login --registry {base}/` or configure a token for this registry"
    ))
}

/// `ANY /r/{*rest}`.
pub async fn entry(
    State(app): State<Arc<App>>,
    ConnectInfo(client_addr): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match dispatch(app, client_addr, method, uri, headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn dispatch(
    app: Arc<App>,
    client_addr: SocketAddr,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let raw = uri.path().strip_prefix("/r/").ok_or_else(ApiError::not_found)?;
    let (registry_raw, rest) = raw.split_at(raw.find('/').unwrap_or(raw.len()));
    let registry_name = RegistryName::parse(registry_raw)
        .map_err(|_| ApiError::NotFound(format!("no registry named {registry_raw:?}")))?;
    let registry = app
        .meta
        .registry(&registry_name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no registry named \"{registry_name}\"")))?;
    let route = route::parse(rest)?;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    // A login request carries the password in its body; a stale header must not block it.
    let principal = match (&route, app.auth.authenticate(authorization, client_addr.ip()).await) {
        (Route::User { .. }, Err(_)) if method == Method::PUT => None,
        (_, result) => result?,
    };
    let ctx = Ctx {
        base: app.registry_base(&registry),
        app,
        registry,
        principal,
        client_addr,
    };
    let body = if method == Method::PUT || method == Method::POST {
        read_body(&ctx, &headers, body).await?
    } else {
        Bytes::new()
    };
    route_request(&ctx, &method, route, &headers, &uri, body).await
}

async fn route_request(
    ctx: &Ctx,
    method: &Method,
    route: Route,
    headers: &HeaderMap,
    uri: &Uri,
    body: Bytes,
) -> ApiResult<Response> {
    use Method as M;
    let head = method == M::HEAD;
    match (method.clone(), route) {
        (M::GET, Route::Root) => Ok(axum::Json(json!({ "registry": ctx.registry.name.to_string() })).into_response()),
        (M::GET | M::HEAD, Route::Ping) => Ok(axum::Json(json!({})).into_response()),
        (M::GET, Route::Whoami) => users::whoami(ctx),
        (M::GET, Route::Search) => search::search(ctx, uri).await,
        (M::GET, Route::All) => search::all(ctx).await,
        (M::POST, Route::WebLogin) => Err(ApiError::NotFound(
            "web login is not enabled; use `npm login --auth-type=legacy`".into(),
        )),
        (M::PUT, Route::User { name }) => users::login(ctx, &name, &body).await,
        (M::GET, Route::User { name }) => users::get_user(ctx, &name).await,
        (M::DELETE, Route::UserToken { token }) => users::logout(ctx, &token).await,
        (M::GET, Route::Tokens) => tokens::list(ctx).await,
        (M::POST, Route::Tokens) => tokens::create(ctx, &body).await,
        (M::DELETE, Route::Token { key }) => tokens::revoke(ctx, &key).await,
        (M::GET, Route::DistTags { name }) => tags::list(ctx, &name).await,
        (M::PUT | M::POST, Route::DistTag { name, tag }) => tags::set(ctx, &name, &tag, &body).await,
        (M::DELETE, Route::DistTag { name, tag }) => tags::remove(ctx, &name, &tag).await,
        (M::GET, Route::Collaborators { name }) => packages::collaborators(ctx, &name).await,
        (M::GET, Route::Visibility { name }) => packages::visibility(ctx, &name).await,
        // No advisory data yet: an empty report keeps `npm install` quiet and correct.
        (M::POST, Route::AuditBulk) => Ok(axum::Json(json!({})).into_response()),
        (M::POST, Route::AuditLegacy) => Ok(axum::Json(empty_legacy_audit()).into_response()),
        (M::GET | M::HEAD, Route::Packument { name }) => packages::packument(ctx, &name, headers, head).await,
        (M::PUT, Route::Packument { name }) => writes::put_package(ctx, &name, None, body).await,
        (M::GET, Route::VersionOrTag { name, spec }) => packages::version(ctx, &name, &spec).await,
        (M::GET | M::HEAD, Route::Tarball { name, file }) => packages::tarball(ctx, &name, &file, head).await,
        (M::PUT, Route::PackageRev { name, rev }) => writes::put_package(ctx, &name, Some(&rev), body).await,
        (M::DELETE, Route::PackageRev { name, rev }) => writes::unpublish_package(ctx, &name, &rev).await,
        (M::DELETE, Route::TarballRev { name, file, .. }) => writes::delete_tarball(ctx, &name, &file).await,
        (_, Route::UnknownApi) => Err(ApiError::NotFound("this registry endpoint is not supported".into())),
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// Reads a request body up to the configured limit, refusing early on a declared
/// `Content-Length` that is already too big; never buffers more than the limit.
async fn read_body(ctx: &Ctx, headers: &HeaderMap, body: Body) -> ApiResult<Bytes> {
    let limit = ctx.app.config.limits.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit_usize)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(limit))
}

fn empty_legacy_audit() -> serde_json::Value {
    json!({
        "actions": [], "advisories": {}, "muted": [],
        "metadata": {
            "vulnerabilities": {"info": 0, "low": 0, "moderate": 0, "high": 0, "critical": 0},
            "dependencies": 0, "devDependencies": 0, "optionalDependencies": 0, "totalDependencies": 0
        }
    })
}
