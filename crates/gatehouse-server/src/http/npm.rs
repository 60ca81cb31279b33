//! The npm protocol under `/r/{registry}/`: one entry point resolves the registry,
//! the caller and the route, then hands over to a handler by resource.

mod attestations;
mod audit;
mod packages;
mod search;
mod tags;
mod tokens;
mod trust;
mod users;
mod web_login;
mod writes;

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use gatehouse_npm::name::PackageName;
use gatehouse_npm::route::{self, Route};
use gatehouse_store::registry::{RegistryName, Role};
use gatehouse_store::{AuditAction, Maintainer, PackageRecord, Registry};
use serde_json::json;

use super::RouteTemplate;
use super::error::{ApiError, ApiResult};
use super::extract::Caller;
use crate::access::{self, Access};
use crate::app::App;
use crate::auth::Principal;
use crate::metrics::Surface;
use crate::packument_cache::Prepared;
use crate::services::Actor;

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
    /// The caller's standing here, which every access check reads.
    pub fn access(&self) -> Access<'_> {
        Access {
            registry: &self.registry,
            principal: self.principal.as_ref(),
            role: self.role,
            registry_url: &self.base,
        }
    }

    pub fn require_read(&self) -> ApiResult<()> {
        Ok(self.access().require_read()?)
    }

    pub fn require_user(&self) -> ApiResult<&Principal> {
        Ok(self.access().require_user()?)
    }

    pub fn require_writer(&self) -> ApiResult<&Principal> {
        Ok(self.access().require_writer()?)
    }

    pub fn require_publisher(&self) -> ApiResult<&Principal> {
        Ok(self.access().require_publisher()?)
    }

    pub fn require_maintainer(&self, record: &PackageRecord) -> ApiResult<&Principal> {
        self.require_maintainer_of(&record.name, &record.maintainers)
    }

    pub fn require_maintainer_of(&self, package: &PackageName, maintainers: &[Maintainer]) -> ApiResult<&Principal> {
        Ok(self.access().require_maintainer(package, maintainers)?)
    }

    pub fn check_token_package(&self, name: &PackageName) -> ApiResult<()> {
        Ok(self.access().check_token_package(name)?)
    }

    /// The caller, for the audit log.
    pub fn actor(&self) -> Actor {
        Actor {
            name: self.principal.as_ref().map(|p| p.user.name.clone()),
            client_addr: Some(self.client_ip),
        }
    }

    /// The prepared package, or 404 when it doesn't exist. A token limited to
    /// other packages is refused whether or not the package exists.
    pub async fn package(&self, name: &PackageName) -> ApiResult<Arc<Prepared>> {
        self.check_token_package(name)?;
        Ok(self.app.packuments.get(&self.registry, name).await?)
    }

    /// 403 for a version the registry's policy withholds, with the rule and the reason;
    /// the request is recorded (a quarantined version enters the review queue so).
    pub fn refuse_withheld(&self, prepared: &Prepared, version: &str) -> ApiResult<()> {
        match prepared.policy.withheld.get(version) {
            Some(withheld) => {
                self.app.firewall.record_request(&self.registry, withheld);
                Err(ApiError::Policy(withheld.refusal.clone()))
            }
            None => Ok(()),
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

    /// Audits a login event; its actor is the user named in the attempt.
    pub async fn audit_login(&self, user: &str, action: AuditAction, detail: Option<String>) {
        if action == AuditAction::AuthLoginFailed {
            tracing::warn!(user, client = %self.client_ip, "login failed");
        }
        let actor = Actor {
            name: Some(user.to_owned()),
            client_addr: Some(self.client_ip),
        };
        self.app
            .services
            .audit(&actor, action, Some(&self.registry), detail)
            .await;
    }
}

/// The stored record behind a prepared package (see `Ctx::local_package`).
fn held(prepared: &Prepared) -> ApiResult<&PackageRecord> {
    prepared.local.as_ref().ok_or_else(ApiError::not_found)
}

/// `ANY /r/{*rest}`.
pub async fn entry(
    State(app): State<Arc<App>>,
    caller: Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = uri.path().strip_prefix("/r/").unwrap_or_default().to_owned();
    let (registry_raw, rest) = path.split_at(path.find('/').unwrap_or(path.len()));
    let incoming = Incoming {
        caller,
        method,
        uri: &uri,
        headers,
        body,
    };
    let mut template = UNMATCHED;
    let response = match dispatch(app, incoming, registry_raw, rest, &mut template).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    measured(response, Surface::registry, template)
}

/// The template of a path that is no route.
const UNMATCHED: &str = "unmatched";

/// Tells the metrics layer which route answered.
fn measured(mut response: Response, surface: Surface, route: &'static str) -> Response {
    response.extensions_mut().insert(RouteTemplate {
        surface,
        route: std::borrow::Cow::Borrowed(route),
    });
    response
}

/// Requests at the host root that belong to a registry: tarballs
/// (`/{name}/-/{file}.tgz`: npm rewrites public-registry tarball URLs of old
/// lockfiles onto the configured registry's host and drops the `/r/{registry}/`
/// prefix) and `npm audit` (which some clients send to the host). They are served by
/// the registry the caller's token is limited to, else the configured root
/// registry, with the same access checks.
pub async fn root(
    State(app): State<Arc<App>>,
    caller: Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = uri.path().to_owned();
    // npm sends the exchange to the host root; the trust configurations say which
    // registry it is for.
    if let (Ok(ref route @ Route::OidcExchange { ref name }), &Method::POST) = (route::parse(&path), &method) {
        let actor = Actor {
            name: None,
            client_addr: Some(caller.ip),
        };
        let response = match trust::exchange(&app, None, name, &headers, actor).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        };
        return measured(response, Surface::root, route.template());
    }
    let belongs = match route::parse(&path) {
        Ok(Route::Tarball { .. }) => method == Method::GET || method == Method::HEAD,
        // npm asks the host of the registry it installs from for the path of
        // `dist.attestations.url`; the path we write names the registry, a copied one may not.
        Ok(Route::Attestations { .. }) => method == Method::GET,
        Ok(Route::AuditBulk | Route::AuditLegacy) => method == Method::POST,
        _ => false,
    };
    if !belongs {
        // Most often a client configured with the host instead of a registry's URL.
        return ApiError::NotFound(format!(
            "Gatehouse serves npm registries under /r/NAME/, not at the host root: \
             set the registry to {}/r/NAME/ (with the trailing slash), e.g. npm config set registry {}/r/default/",
            app.public_url.as_str(),
            app.public_url.as_str()
        ))
        .into_response();
    }
    let token_registry = match &caller.credentials {
        Ok(Some(principal)) => principal
            .token
            .as_ref()
            .filter(|t| t.registries.len() == 1)
            .and_then(|t| t.registries.first().cloned()),
        _ => None,
    };
    let registry = token_registry.unwrap_or_else(|| app.config.root_registry.to_string());
    let incoming = Incoming {
        caller,
        method,
        uri: &uri,
        headers,
        body,
    };
    let mut template = UNMATCHED;
    let response = match dispatch(app, incoming, &registry, &path, &mut template).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    measured(response, Surface::root, template)
}

/// A request as it arrived.
struct Incoming<'a> {
    caller: Caller,
    method: Method,
    uri: &'a Uri,
    headers: HeaderMap,
    body: Body,
}

/// Serves a registry request; `template` is set to its route's as soon as it is known.
async fn dispatch(
    app: Arc<App>,
    incoming: Incoming<'_>,
    registry_raw: &str,
    rest: &str,
    template: &mut &'static str,
) -> ApiResult<Response> {
    let Incoming {
        caller,
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
    *template = route.template();
    let client_ip = caller.ip;
    let principal = match (&route, caller.credentials) {
        // A login carries its credentials in the body; a stale header must not block it.
        (Route::User { .. } | Route::WebLoginPage { .. } | Route::WebLoginDone { .. }, Err(_)) => None,
        // Its bearer credential is a CI job's OIDC token, not ours.
        (Route::OidcExchange { .. }, _) => None,
        (_, Ok(principal)) => principal,
        (_, Err(e)) => {
            let actor = Actor {
                name: None,
                client_addr: Some(client_ip),
            };
            app.services
                .audit(&actor, AuditAction::AuthFailed, Some(&registry), Some(e.to_string()))
                .await;
            return Err(e.into());
        }
    };
    if let Some(p) = &principal {
        access::check_token_registry(p, &registry.name)?;
    }
    let role = match &principal {
        Some(p) => app.access.effective_role(&registry, p).await?,
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
        super::extract::read_body(&headers, body, &ctx.app.config.limits).await?
    } else {
        Bytes::new()
    };
    route_request(&ctx, &method, route, &headers, uri, body).await
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
        (M::GET, Route::WebLoginPage { id }) => Ok(web_login::page(ctx, &id)),
        (M::GET, Route::WebLoginDone { id }) => web_login::poll(ctx, &id).await,
        (M::PUT, Route::User { name }) => users::login(ctx, &name, &body).await,
        (M::GET, Route::User { name }) => users::get_user(ctx, &name).await,
        (M::DELETE, Route::UserToken { token }) => users::logout(ctx, &token).await,
        (M::GET, Route::Profile) => users::profile(ctx),
        (M::POST, Route::Profile) => users::set_profile(ctx, &body).await,
        (M::GET, Route::Tokens) => tokens::list(ctx).await,
        (M::POST, Route::Tokens) => tokens::create(ctx, &body).await,
        (M::DELETE, Route::Token { key }) => tokens::revoke(ctx, &key).await,
        (M::GET, Route::DistTags { name }) => tags::list(ctx, &name).await,
        (M::PUT | M::POST, Route::DistTag { name, tag }) => tags::set(ctx, &name, &tag, &body).await,
        (M::DELETE, Route::DistTag { name, tag }) => tags::remove(ctx, &name, &tag).await,
        (M::GET, Route::Collaborators { name }) => packages::collaborators(ctx, &name).await,
        (M::GET, Route::Visibility { name }) => packages::visibility(ctx, &name).await,
        (M::GET, Route::Trust { name }) => trust::list(ctx, &name).await,
        (M::POST, Route::Trust { name }) => trust::add(ctx, &name, &body).await,
        (M::DELETE, Route::TrustConfig { name, id }) => trust::remove(ctx, &name, &id).await,
        (M::POST, Route::OidcExchange { name }) => {
            trust::exchange(&ctx.app, Some(&ctx.registry), &name, headers, ctx.actor()).await
        }
        (M::GET, Route::Attestations { name, version }) => attestations::get(ctx, &name, &version).await,
        (M::POST, Route::AuditBulk) => audit::bulk(ctx, headers, body).await,
        (M::POST, Route::AuditLegacy) => audit::quick(ctx, headers, body).await,
        (M::GET | M::HEAD, Route::Packument { name }) => packages::packument(ctx, &name, headers, head).await,
        (M::PUT, Route::Packument { name }) => writes::put_package(ctx, &name, None, body).await,
        (M::GET, Route::VersionOrTag { name, spec }) => packages::version(ctx, &name, &spec).await,
        (M::GET | M::HEAD, Route::Tarball { name, file }) => packages::tarball(ctx, &name, &file, head, headers).await,
        (M::PUT, Route::PackageRev { name, rev }) => writes::put_package(ctx, &name, Some(&rev), body).await,
        (M::DELETE, Route::PackageRev { name, rev }) => writes::unpublish_package(ctx, &name, &rev).await,
        (M::DELETE, Route::TarballRev { name, file, .. }) => writes::delete_tarball(ctx, &name, &file).await,
        (_, Route::UnknownApi) => Err(ApiError::NotFound("this registry endpoint is not supported".into())),
        _ => Err(ApiError::MethodNotAllowed),
    }
}
