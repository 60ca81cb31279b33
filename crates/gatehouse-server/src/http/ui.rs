//! The web app at `/-/ui/`: server-rendered pages (askama templates compiled into
//! the binary), one stylesheet and one script of our own. Signed in by a session
//! cookie that only these routes read; every state-changing request from another
//! origin is refused (`CsrfLayer`: `Sec-Fetch-Site` and `Origin`), and every page
//! carries a strict Content-Security-Policy. Handlers are thin: they read through the
//! same caches and write through the same `Services` as the npm routes and the API.

mod assets;
mod audit;
mod npm_login;
mod packages;
mod policy;
mod registries;
mod session;
mod tokens;
mod users;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tower_http::csrf::CsrfLayer;

use gatehouse_store::registry::{RegistryName, Role};
use gatehouse_store::{Registry, StoreResult, User, now_millis};

use super::error::ApiError;
use super::extract::ClientIp;
use crate::app::App;
use crate::auth::Principal;
use crate::auth::handoff;
use crate::auth::session::COOKIE;
use crate::auth::token::{TokenSpec, hash_secret};
use crate::services::{Actor, Services};

/// Refuses state-changing requests a browser sent from another origin (another site,
/// or another port of this host) with `refused`; requests with neither `Sec-Fetch-Site`
/// nor `Origin` (not from a browser) pass.
pub fn same_origin_only<R: Clone>(app: &App, refused: R) -> CsrfLayer<R> {
    let csrf = CsrfLayer::new().with_rejection_response(refused);
    // The public URL is an origin browsers send too (behind a proxy that rewrites Host).
    match csrf.clone().add_trusted_origin(app.public_url.as_str()) {
        Ok(with_origin) => with_origin,
        Err(_) => csrf,
    }
}

pub fn router(app: &App) -> Router<Arc<App>> {
    let csrf = same_origin_only(app, |_| {
        UiError::Refused(
            StatusCode::FORBIDDEN,
            "This form was sent from another site (or another port of this host), so it was refused. Open the page on this server and send it again.".into(),
        )
        .into_response()
    });
    Router::new()
        .route("/-/ui/", get(registries::list).post(registries::create))
        .route("/-/ui/login", get(session::form).post(session::sign_in))
        .route("/-/ui/logout", post(session::sign_out))
        .route("/-/ui/tokens", get(tokens::list).post(tokens::create))
        .route("/-/ui/tokens/{key}/revoke", post(tokens::revoke))
        .route("/-/ui/quarantine", get(registries::quarantine))
        .route("/-/ui/users", get(users::list).post(users::create))
        .route("/-/ui/grants", post(users::grant))
        .route("/-/ui/password-reset", post(users::reset_password))
        .route("/-/ui/users/{name}", post(users::change))
        .route("/-/ui/audit", get(audit::list))
        .route("/-/ui/npm-login/{id}", get(npm_login::show).post(npm_login::approve))
        .route("/-/ui/r/{registry}", get(registries::packages))
        .route(
            "/-/ui/r/{registry}/setup",
            get(registries::setup).post(registries::setup_token),
        )
        .route(
            "/-/ui/r/{registry}/upstreams",
            get(registries::upstreams).post(registries::change_upstreams),
        )
        .route("/-/ui/r/{registry}/policy", get(policy::show).post(policy::submit))
        .route("/-/ui/r/{registry}/exceptions", post(policy::add_exception))
        .route(
            "/-/ui/r/{registry}/exceptions/{id}/remove",
            post(policy::remove_exception),
        )
        .route("/-/ui/r/{registry}/review", post(registries::review))
        .route(
            "/-/ui/r/{registry}/access",
            get(registries::access).post(registries::grant),
        )
        .route(
            "/-/ui/r/{registry}/delete",
            get(registries::confirm_delete).post(registries::delete),
        )
        .route("/-/ui/r/{registry}/p/{*name}", get(packages::page))
        .route("/-/ui/assets/{file}", get(assets::serve))
        .layer(csrf)
        .layer(axum::middleware::map_response(security_headers))
}

/// Every page: no framing, no sniffing, no referrer to other sites, and nothing
/// loaded or run that is not ours (no inline script or style anywhere).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "same-origin");
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(
        headers,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=()",
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
    response
}

/// A page for a person: an error page they can read, or a sign-in redirect.
pub enum UiError {
    SignIn { next: String },
    Refused(StatusCode, String),
    Api(ApiError),
}

impl<E: Into<ApiError>> From<E> for UiError {
    fn from(e: E) -> Self {
        UiError::Api(e.into())
    }
}

pub type UiResult<T = Response> = Result<T, UiError>;

#[derive(Template)]
#[template(path = "ui/error.html")]
struct ErrorPage<'a> {
    nav: Nav,
    status: u16,
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            UiError::SignIn { next } => {
                let target = format!(
                    "/-/ui/login?next={}",
                    percent_encoding::utf8_percent_encode(&next, PATH_SEGMENT)
                );
                return Redirect::to(&target).into_response();
            }
            UiError::Refused(status, message) => (status, message),
            UiError::Api(e) => {
                let status = e.status();
                if let ApiError::Internal(_) = &e {
                    // Logged with its causes by the API's mapping; the page says nothing more.
                    let _ = e.into_response();
                    (
                        status,
                        "Something went wrong on the server; the error was logged.".to_owned(),
                    )
                } else {
                    (status, e.to_string())
                }
            }
        };
        let page = ErrorPage {
            nav: Nav::anonymous(),
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error"),
            message: &message,
        };
        (status, render(&page)).into_response()
    }
}

/// A rendered template, or a plain error (templates are compiled in; this does not
/// happen unless a `Display` of ours fails).
pub fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "page did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page did not render").into_response()
        }
    }
}

/// What the navigation bar shows.
pub struct Nav {
    pub user: Option<String>,
    pub admin: bool,
}

impl Nav {
    fn anonymous() -> Nav {
        Nav {
            user: None,
            admin: false,
        }
    }

    /// The assets' version, for their cache-busting query.
    pub fn assets(&self) -> &'static str {
        &assets::VERSION
    }
}

/// A new token, between the form that asks for it and the one page that shows it:
/// the form keeps what was asked (a store handoff, so the page may be answered by
/// another replica), the page mints it, once, for the session that asked, within two
/// minutes. A reload of that page shows nothing and mints nothing. No secret is
/// stored: the token exists only from the moment its page shows it.
pub struct ShownOnce {
    meta: gatehouse_store::Meta,
}

/// What a form left for its page.
#[derive(serde::Serialize, serde::Deserialize)]
struct Kept {
    /// The SHA-256 of the session that may collect it.
    session: String,
    spec: TokenSpec,
    /// What the page calls the token.
    label: String,
}

const SHOWN_ONCE_TTL_MS: i64 = 120_000;

impl ShownOnce {
    pub fn new(meta: gatehouse_store::Meta) -> Self {
        ShownOnce { meta }
    }

    /// Keeps `spec` (labelled `label`) for this viewer; returns the id its page asks with.
    pub async fn keep(&self, viewer: &Viewer, spec: TokenSpec, label: String) -> StoreResult<String> {
        let id = crate::auth::web_login::random_id();
        let kept = Kept {
            session: hash_secret(&viewer.session_id),
            spec,
            label,
        };
        handoff::put(&self.meta, &key(&id), &kept, now_millis() + SHOWN_ONCE_TTL_MS).await?;
        Ok(id)
    }

    /// Mints the token kept under `id`, once, and only for the session that asked:
    /// its secret and label.
    pub async fn take(&self, services: &Services, viewer: &Viewer, id: &str) -> UiResult<Option<(String, String)>> {
        let Some(kept) = handoff::take::<Kept>(&self.meta, &key(id)).await? else {
            return Ok(None);
        };
        if kept.session != hash_secret(&viewer.session_id) {
            return Ok(None);
        }
        let minted = services.issue_token(&viewer.actor(), viewer.user(), kept.spec).await?;
        Ok(Some((minted.secret, kept.label)))
    }
}

fn key(id: &str) -> String {
    handoff::key("shown-once", id)
}

/// The signed-in person, from the session cookie. Pages that need one redirect to
/// the sign-in page otherwise; the cookie is never read by the npm routes.
pub struct Viewer {
    pub principal: Principal,
    pub ip: std::net::IpAddr,
    session_id: String,
}

impl Viewer {
    pub fn user(&self) -> &User {
        &self.principal.user
    }

    pub fn nav(&self) -> Nav {
        Nav {
            user: Some(self.principal.user.name.clone()),
            admin: self.principal.user.is_admin,
        }
    }

    pub fn actor(&self) -> Actor {
        Actor {
            name: Some(self.principal.user.name.clone()),
            client_addr: Some(self.ip),
        }
    }

    /// The registry and this person's role in it; a registry they may not see is
    /// "not found", as on the npm routes.
    pub async fn registry(&self, app: &App, name: &str, needs: Role) -> UiResult<(Registry, Role)> {
        let not_found = || {
            UiError::Refused(
                StatusCode::NOT_FOUND,
                format!("There is no registry \"{name}\" you can see."),
            )
        };
        let name = RegistryName::parse(name).map_err(|_| not_found())?;
        let registry = app.access.registry(&name).await?.ok_or_else(not_found)?;
        let role = app.access.effective_role(&registry, &self.principal).await?;
        let role = match role {
            Some(role) => role,
            None if registry.public_read => Role::Read,
            None => return Err(not_found()),
        };
        if role < needs {
            return Err(UiError::Refused(
                StatusCode::FORBIDDEN,
                format!(
                    "This needs the {} role in registry \"{}\"; you have {}. Ask a registry admin.",
                    needs.as_str(),
                    registry.name,
                    role.as_str()
                ),
            ));
        }
        Ok((registry, role))
    }
}

/// The session cookie's value, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

impl FromRequestParts<Arc<App>> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, app).await?;
        let sign_in = || UiError::SignIn {
            next: parts
                .uri
                .path_and_query()
                .map_or("/-/ui/".to_owned(), |p| p.as_str().to_owned()),
        };
        let Some(session_id) = session_cookie(&parts.headers) else {
            return Err(sign_in());
        };
        let Some(session) = app.sessions.find(&session_id).await? else {
            return Err(sign_in());
        };
        Ok(Viewer {
            principal: Principal {
                user: session.user,
                token: None,
            },
            ip,
            session_id,
        })
    }
}

/// `Set-Cookie` for a session: `HttpOnly`, `SameSite=Lax`, `Secure` behind https,
/// scoped to the web app's path so the npm routes never receive it.
fn session_cookie_header(app: &App, value: &str, max_age_secs: u64) -> HeaderValue {
    let secure = if app.public_url.as_str().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{COOKIE}={value}; Path=/-/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}");
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("gatehouse_session=; Max-Age=0"))
}

/// A form's fields, or a 400 saying what was wrong.
pub fn form<T: serde::de::DeserializeOwned>(body: &[u8]) -> UiResult<T> {
    serde_urlencoded::from_bytes(body).map_err(|e| {
        UiError::Refused(
            StatusCode::BAD_REQUEST,
            format!("The form was not filled in as expected: {e}"),
        )
    })
}

/// After a change: back to a page, with what happened said there.
pub fn see_other(path: &str, flash: &str) -> Response {
    let sep = if path.contains('?') { '&' } else { '?' };
    let target = format!(
        "{path}{sep}done={}",
        percent_encoding::utf8_percent_encode(flash, percent_encoding::NON_ALPHANUMERIC)
    );
    Redirect::to(&target).into_response()
}

/// Dates as people read them (UTC).
pub fn when(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// A path segment for a package name in our own links (`@scope/name` stays readable).
pub fn package_path(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, PATH_SEGMENT).to_string()
}

const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'@')
    .remove(b'/')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');
