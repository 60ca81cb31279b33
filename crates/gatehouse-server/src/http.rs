//! HTTP: the router, the server loop and server-wide endpoints. Registry endpoints
//! live in `http::npm`; handlers stay thin and call the parts below them.

pub mod api;
pub mod error;
pub mod extract;
pub mod npm;
pub mod ranges;
pub mod serve;
pub mod ui;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use serde_json::json;
use tokio::net::TcpListener;

use crate::app::App;
use crate::metrics::{self, RouteLabels, Surface};
use error::{ApiError, Problem};
use extract::SessionCaller;

pub fn router(app: Arc<App>) -> Router {
    let router = routes(&app);
    // Requests are counted by the accept loop (`serve`), outside the router.
    let router = if app.config.metrics.enabled {
        router.route("/-/metrics", get(metrics))
    } else {
        router
    };
    // Bodies are read with our own limit (see `npm::read_body`) for a clear JSON error.
    router.layer(DefaultBodyLimit::disable()).with_state(app)
}

fn routes(app: &Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/-/ui/") }))
        .route("/-/ping", get(ping))
        .route("/-/health", get(ping))
        .route("/-/ready", get(ready))
        .merge(api_routes(app).route_layer(axum::middleware::from_fn(name_route)))
        .merge(ui::router(app).route_layer(axum::middleware::from_fn(name_route)))
        .route("/r/{*rest}", any(npm::entry))
        .fallback(npm::root)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests (`serve`: the
/// connection limit and timeouts of `[limits]`).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = app.config.limits;
    let measured = app.config.metrics.enabled;
    serve::serve(router(app), listener, &limits, measured, shutdown).await
}

/// The admin API: a token (Bearer or Basic) or the web app's session cookie, with the
/// same-origin check on every state-changing request (a cookie comes along by itself).
fn api_routes(app: &Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route(
            "/-/api/v1/registries",
            get(api::list_registries).post(api::create_registry),
        )
        .route(
            "/-/api/v1/registries/{registry}",
            axum::routing::patch(api::change_registry).delete(api::delete_registry),
        )
        .route("/-/api/v1/registries/{registry}/packages", get(api::list_packages))
        .route(
            "/-/api/v1/registries/{registry}/packages/{*name}",
            axum::routing::delete(api::delete_package).patch(api::change_package),
        )
        .route("/-/api/v1/registries/{registry}/setup", get(api::registry_setup))
        .route("/-/api/v1/registries/{registry}/purge", post(api::purge_package))
        .route("/-/api/v1/registries/{registry}/clone", post(api::clone_registry))
        .route("/-/api/v1/registries/{registry}/push", post(api::push_version))
        .route("/-/api/v1/users", get(api::list_users).post(api::create_user))
        .route("/-/api/v1/audit", get(api::audit))
        .route(
            "/-/api/v1/users/{name}",
            axum::routing::patch(api::change_user).delete(api::delete_user),
        )
        .route("/-/api/v1/users/{name}/unlock", post(api::unlock_user))
        .route(
            "/-/api/v1/registries/{registry}/claims",
            get(api::list_claims).post(api::add_claim),
        )
        .route(
            "/-/api/v1/registries/{registry}/claims/{*pattern}",
            axum::routing::delete(api::remove_claim),
        )
        .route(
            "/-/api/v1/registries/{registry}/policy",
            get(api::get_policy).put(api::set_policy).delete(api::reset_policy),
        )
        .route(
            "/-/api/v1/registries/{registry}/policy/check",
            post(api::check_lockfile),
        )
        .route("/-/api/v1/registries/{registry}/decisions", get(api::decisions))
        .route("/-/api/v1/registries/{registry}/quarantine", get(api::quarantine_queue))
        .route(
            "/-/api/v1/registries/{registry}/quarantine/approve",
            post(api::quarantine_approve),
        )
        .route(
            "/-/api/v1/registries/{registry}/quarantine/reject",
            post(api::quarantine_reject),
        )
        .route(
            "/-/api/v1/registries/{registry}/exceptions",
            get(api::list_exceptions).post(api::add_exception),
        )
        .route(
            "/-/api/v1/registries/{registry}/exceptions/{id}",
            axum::routing::delete(api::remove_exception),
        )
        .route(
            "/-/api/v1/registries/{registry}/trust",
            get(api::list_trust).post(api::add_trust),
        )
        .route(
            "/-/api/v1/registries/{registry}/trust/{id}",
            axum::routing::delete(api::remove_trust),
        )
        .route(
            "/-/api/v1/registries/{registry}/upstreams",
            get(api::list_upstreams)
                .post(api::add_upstream)
                .patch(api::change_upstream)
                .delete(api::remove_upstream),
        )
        .route("/-/api/v1/registries/{registry}/members", get(api::list_members))
        .route(
            "/-/api/v1/registries/{registry}/members/{user}",
            axum::routing::put(api::grant).delete(api::revoke),
        )
        .route("/-/api/v1/tokens", get(api::list_tokens).post(api::create_token))
        .route("/-/api/v1/tokens/{key}", axum::routing::delete(api::revoke_token))
        .route("/-/api/v1/check", get(api::check))
        .route("/-/api/v1/gc", post(api::gc))
        .route("/-/api/v1/advisories", get(api::advisory_stats))
        .route("/-/api/v1/advisories/import", post(api::import_advisories))
        .route("/-/api/v1/openapi.json", get(api::openapi::serve))
        .route("/-/api/{*rest}", any(api::no_such_endpoint))
        .layer(axum::middleware::from_fn_with_state(app.clone(), api_session))
        .layer(ui::same_origin_only(app, |_| {
            Problem(ApiError::Forbidden(
                "this request came from a page of another site (or another port of this host), so it was refused"
                    .into(),
            ))
            .into_response()
        }))
}

/// A request without `Authorization` that carries a web app session acts as that
/// session's user (`SessionCaller`); the npm routes never look.
async fn api_session(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    mut request: Request,
    next: Next,
) -> Response {
    if !request.headers().contains_key(axum::http::header::AUTHORIZATION)
        && let Some(id) = ui::session_cookie(request.headers())
    {
        match app.sessions.find(&id).await {
            Ok(Some(session)) => {
                let principal = crate::auth::Principal {
                    user: session.user,
                    token: None,
                };
                request.extensions_mut().insert(SessionCaller(principal));
            }
            Ok(None) => {}
            Err(e) => return Problem(ApiError::from(e)).into_response(),
        }
    }
    next.run(request).await
}

/// Which route answered, for the metrics: set on the response by the npm dispatcher
/// (the router sees only `/r/{*rest}`) and by [`name_route`] for the API and the web app.
#[derive(Debug, Clone)]
pub struct RouteTemplate {
    pub surface: Surface,
    pub route: Cow<'static, str>,
}

/// Names the API's and the web app's routes by their router template. Only on those
/// routers: the npm and operations routes, the hot ones, name themselves for free.
async fn name_route(request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(path) = matched
        && response.extensions().get::<RouteTemplate>().is_none()
    {
        let path = path.as_str();
        let surface = if path.starts_with("/-/ui/") {
            Surface::ui
        } else {
            Surface::api
        };
        response.extensions_mut().insert(RouteTemplate {
            surface,
            route: Cow::Owned(path.to_owned()),
        });
    }
    response
}

/// One request being timed: counted by route template and status, timed to its head.
/// Done in the accept loop rather than as a router layer, which would box every
/// request's future once more.
pub(crate) struct Measuring {
    started: Instant,
    method: &'static str,
    /// The operations routes, known by their path alone.
    ops: Option<&'static str>,
}

impl Measuring {
    pub(crate) fn begin<B>(request: &axum::http::Request<B>) -> Self {
        let path = request.uri().path();
        let ops = ["/", "/-/ping", "/-/health", "/-/ready", "/-/metrics"]
            .into_iter()
            .find(|ops| path == *ops);
        Measuring {
            started: Instant::now(),
            method: method_label(request.method()),
            ops,
        }
    }

    pub(crate) fn finish<B>(self, response: &axum::http::Response<B>) {
        let (surface, route) = match (response.extensions().get::<RouteTemplate>(), self.ops) {
            (Some(template), _) => (template.surface, template.route.clone()),
            (None, Some(ops)) => (Surface::ops, Cow::Borrowed(ops)),
            (None, None) => (Surface::root, Cow::Borrowed("unmatched")),
        };
        let labels = RouteLabels {
            surface,
            route,
            method: self.method,
        };
        metrics::global().request(labels, response.status().as_u16(), self.started.elapsed());
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `GET /-/metrics`: the Prometheus text format. No names of packages, users or
/// registries are in it, so it is served like `/-/health`.
async fn metrics(axum::extract::State(app): axum::extract::State<Arc<App>>) -> Response {
    let text = metrics::global().render(&app.meta.pool_use());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn ping() -> impl IntoResponse {
    axum::Json(json!({}))
}

/// `GET /-/ready`: 200 when the database answers and the blob store can be read (a
/// store opens only once its migrations are applied), each within two seconds; else
/// 503 saying which part is not usable.
async fn ready(axum::extract::State(app): axum::extract::State<Arc<App>>) -> Response {
    async fn probe<T, E: std::fmt::Display>(
        part: &'static str,
        check: impl Future<Output = Result<T, E>>,
    ) -> Result<(), (&'static str, String)> {
        match tokio::time::timeout(std::time::Duration::from_secs(2), check).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err((part, e.to_string())),
            Err(_) => Err((part, "no answer within 2 s".to_owned())),
        }
    }
    // Any key: the answer (stored or not) shows the blob store is reachable.
    let key = gatehouse_store::blobs::BlobKey::from_bytes([0; 64]);
    let checked = async {
        probe("database", app.meta.last_change()).await?;
        probe("blobs", app.blobs.store().contains(&key)).await
    };
    let Err((part, error)) = checked.await else {
        return axum::Json(json!({"status": "ready"})).into_response();
    };
    tracing::error!(part, error, "readiness check failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"status": "unavailable", "part": part})),
    )
        .into_response()
}
