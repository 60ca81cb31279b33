//! The npm protocol under `/r/{registry}/`: one entry point resolves the registry,
//! the caller and the route, then hands over to a handler by resource.

mod packages;
mod search;
mod tags;
mod tokens;
mod users;
mod web_login;
mod writes;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::{ApiError, ApiResult};
use crate::app::App;
use crate::auth::Principal;
use crate::auth::cidr::Cidr;
use crate::npm::name::PackageName;
use crate::npm::route::{self, Route};
use crate::packument_cache::{CacheError, Prepared};
use crate::registry::{RegistryName, Role};
use crate::store::{AuditEntry, Maintainer, PackageRecord, Registry};

/// Everything a handler knows about the request it serves.
pub struct Ctx {
    pub app: Arc<App>,
    pub registry: Registry,
    pub principal: Option<Principal>,
    /// The caller's role in this registry (`None`: no access beyond public reads).
    pub role: Option<Role>,
    pub client_ip: IpAddr,
    /// `{public}/r/{registry}`: base for tarball and login URLs.
    pub base: String,
}

impl Ctx {
    /// Private registries answer 401 to anonymous callers, so clients ask for credentials.
    pub fn require_read(&self) -> ApiResult<()> {
        match (&self.principal, self.role) {
            _ if self.registry.public_read => Ok(()),
            (None, _) => Err(login_required(&self.base)),
            (Some(_), Some(_)) => Ok(()),
            (Some(p), None) => Err(ApiError::Forbidden(format!(
                "user \"{}\" has no access to registry \"{}\"; ask an administrator for a role",
                p.user.name, self.registry.name
            ))),
        }
    }

    pub fn require_user(&self) -> ApiResult<&Principal> {
        self.principal.as_ref().ok_or_else(|| login_required(&self.base))
    }

    /// A caller allowed to change things: logged in with publish rights, and not
    /// through a read-only token.
    pub fn require_writer(&self) -> ApiResult<&Principal> {
        let principal = self.require_user()?;
        if principal.is_readonly() {
            return Err(ApiError::Forbidden(
                "this token is read-only; use a token with publish scope to change packages".into(),
            ));
        }
        if self.role < Some(Role::Publish) {
            return Err(ApiError::Forbidden(format!(
                "user \"{}\" may not publish to registry \"{}\"; ask an administrator for the publish role",
                principal.user.name, self.registry.name
            )));
        }
        Ok(principal)
    }

    /// A writer who maintains the package, or administers the registry.
    pub fn require_maintainer(&self, record: &PackageRecord) -> ApiResult<&Principal> {
        self.require_maintainer_of(&record.name, &record.maintainers)
    }

    /// Like `require_maintainer`, from the maintainer list alone.
    pub fn require_maintainer_of(&self, package: &PackageName, maintainers: &[Maintainer]) -> ApiResult<&Principal> {
        let principal = self.require_writer()?;
        let name = &principal.user.name;
        if self.role == Some(Role::Admin) || maintainers.iter().any(|m| &m.name == name) {
            Ok(principal)
        } else {
            Err(ApiError::Forbidden(format!(
                "You do not have permission to change \"{package}\". Are you logged in as the correct user?"
            )))
        }
    }

    /// The prepared package, or 404 when it doesn't exist. A token limited to
    /// other packages is refused whether or not the package exists.
    pub async fn package(&self, name: &PackageName) -> ApiResult<Arc<Prepared>> {
        self.check_token_package(name)?;
        match self.app.packuments.get(&self.registry, name).await {
            Ok(p) => Ok(p),
            Err(CacheError::Absent) => Err(ApiError::not_found()),
            Err(CacheError::Upstream(why)) => Err(ApiError::BadGateway(why)),
            Err(e) => Err(ApiError::internal(e)),
        }
    }

    /// The package as stored in this registry; 404 for packages only an upstream has
    /// (they can't be changed here).
    pub async fn local_package(&self, name: &PackageName) -> ApiResult<Arc<Prepared>> {
        let prepared = self.package(name).await?;
        if prepared.local.is_none() {
            return Err(ApiError::NotFound(format!(
                "\"{name}\" is not held in registry \"{}\" (it comes from an upstream)",
                self.registry.name
            )));
        }
        Ok(prepared)
    }

    /// A token limited to other packages is refused, whether or not the package exists.
    pub fn check_token_package(&self, name: &PackageName) -> ApiResult<()> {
        match &self.principal {
            Some(principal) if !principal.may_use_package(name.as_str()) => Err(ApiError::Forbidden(format!(
                "this token is limited to other packages and may not be used for \"{name}\""
            ))),
            _ => Ok(()),
        }
    }

    /// Audits a login event; its actor is the user named in the attempt.
    pub async fn audit_login(&self, user: &str, action: &'static str, detail: Option<String>) {
        if action == "auth.login_failed" {
            tracing::warn!(user, client = %self.client_ip, "login failed");
        }
        self.app
            .audit(AuditEntry {
                actor: Some(user.to_owned()),
                action,
                registry: Some(self.registry.name.to_string()),
                detail,
                client_addr: Some(self.client_ip.to_string()),
                ..AuditEntry::default()
            })
            .await;
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
                client_addr: Some(self.client_ip.to_string()),
            })
            .await;
    }
}

/// The stored record behind a prepared package (see `Ctx::local_package`).
fn held(prepared: &Prepared) -> ApiResult<&PackageRecord> {
    prepared.local.as_ref().ok_or_else(ApiError::not_found)
}

fn login_required(base: &str) -> ApiError {
    ApiError::Unauthorized(format!(
        "authentication required: log in with `npm login --registry {base}/` or configure a token for this registry"
    ))
}

/// `ANY /r/{*rest}`.
pub async fn entry(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = uri.path().strip_prefix("/r/").unwrap_or_default().to_owned();
    let (registry_raw, rest) = path.split_at(path.find('/').unwrap_or(path.len()));
    let incoming = Incoming {
        peer,
        method,
        uri: &uri,
        headers,
        body,
    };
    match dispatch(app, incoming, registry_raw, rest).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// Tarballs asked for at the host root (`/{name}/-/{file}.tgz`): npm rewrites
/// public-registry tarball URLs of old lockfiles onto the configured registry's host
/// and drops the `/r/{registry}/` prefix. They are served from the registry the
/// caller's token is limited to, else the configured root registry, with the same
/// access checks.
pub async fn root_tarball(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_owned();
    let is_tarball = matches!(route::parse(&path), Ok(Route::Tarball { .. }));
    if !is_tarball || !(method == Method::GET || method == Method::HEAD) {
        return ApiError::not_found().into_response();
    }
    let client = client_ip(&app.config.trusted_proxies, peer.ip(), &headers);
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token_registry = match app.auth.authenticate(authorization, client).await {
        Ok(Some(principal)) => principal
            .token
            .filter(|t| t.registries.len() == 1)
            .and_then(|t| t.registries.into_iter().next()),
        _ => None,
    };
    let registry = token_registry.unwrap_or_else(|| app.config.root_registry.to_string());
    let incoming = Incoming {
        peer,
        method,
        uri: &uri,
        headers,
        body: Body::empty(),
    };
    match dispatch(app, incoming, &registry, &path).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// A request as it arrived.
struct Incoming<'a> {
    peer: SocketAddr,
    method: Method,
    uri: &'a Uri,
    headers: HeaderMap,
    body: Body,
}

async fn dispatch(app: Arc<App>, incoming: Incoming<'_>, registry_raw: &str, rest: &str) -> ApiResult<Response> {
    let Incoming {
        peer,
        method,
        uri,
        headers,
        body,
    } = incoming;
    let registry_name = RegistryName::parse(registry_raw)
        .map_err(|_| ApiError::NotFound(format!("no registry named {registry_raw:?}")))?;
    let registry = app
        .access
        .registry(&registry_name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no registry named \"{registry_name}\"")))?;
    let route = route::parse(rest)?;
    let client_ip = client_ip(&app.config.trusted_proxies, peer.ip(), &headers);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let principal = match (&route, app.auth.authenticate(authorization, client_ip).await) {
        // A login carries its credentials in the body; a stale header must not block it.
        (Route::User { .. } | Route::WebLoginPage { .. } | Route::WebLoginDone { .. }, Err(_)) => None,
        (_, Ok(principal)) => principal,
        (_, Err(e)) => {
            app.audit(AuditEntry {
                action: "auth.failed",
                registry: Some(registry.name.to_string()),
                detail: Some(e.to_string()),
                client_addr: Some(client_ip.to_string()),
                ..AuditEntry::default()
            })
            .await;
            return Err(e.into());
        }
    };
    if let Some(p) = &principal
        && !p.may_use_registry(registry.name.as_str())
    {
        return Err(ApiError::Forbidden(format!(
            "this token is not valid for registry \"{}\"; use a token created for it",
            registry.name
        )));
    }
    let role = match &principal {
        Some(p) => effective_role(&app, &registry, p).await?,
        None => None,
    };
    let ctx = Ctx {
        base: app.registry_base(&registry),
        app,
        registry,
        principal,
        role,
        client_ip,
    };
    let body = if method == Method::PUT || method == Method::POST {
        read_body(&ctx, &headers, body).await?
    } else {
        Bytes::new()
    };
    route_request(&ctx, &method, route, &headers, uri, body).await
}

/// Global admins administer everything; otherwise an explicit grant, else the
/// registry's default for logged-in users. A read-only token caps the role at read.
async fn effective_role(app: &App, registry: &Registry, principal: &Principal) -> ApiResult<Option<Role>> {
    let role = if principal.user.is_admin {
        Some(Role::Admin)
    } else {
        app.access
            .member_role(registry.id, principal.user.id)
            .await?
            .or(registry.default_role)
    };
    Ok(if principal.is_readonly() {
        role.map(|r| r.min(Role::Read))
    } else {
        role
    })
}

/// The client's address: the peer, unless the peer is a trusted proxy, in which case
/// the right-most address in `X-Forwarded-For` that is not itself a trusted proxy.
fn client_ip(trusted: &[Cidr], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => continue,
            Ok(ip) => return ip,
            // Garbage in the chain: don't trust anything left of it.
            Err(_) => return peer,
        }
    }
    peer
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
        (M::POST, Route::WebLogin) => web_login::start(ctx).await,
        (M::GET, Route::WebLoginPage { id }) => web_login::page(ctx, &id).await,
        (M::POST, Route::WebLoginPage { id }) => web_login::submit(ctx, &id, &body).await,
        (M::GET, Route::WebLoginDone { id }) => web_login::poll(ctx, &id).await,
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
    axum::body::to_bytes(body, limit_usize).await.map_err(|e| {
        if over_limit(&e) {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::BadRequest(format!("could not read the request body: {e}"))
        }
    })
}

/// Whether reading a body failed because it passed the limit (not a broken connection).
fn over_limit(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
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
