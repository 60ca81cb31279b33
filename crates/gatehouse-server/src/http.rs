//! HTTP: the router, the server loop and server-wide endpoints. Registry endpoints
//! live in `http::npm`; handlers stay thin and call the parts below them.

pub mod api;
pub mod error;
pub mod extract;
pub mod npm;
pub mod serve;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use serde_json::json;
use tokio::net::TcpListener;

use crate::app::App;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/-/ui/") }))
        .route("/-/ping", get(ping))
        .route("/-/health", get(ping))
        .route("/-/ready", get(ready))
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
            axum::routing::delete(api::delete_package),
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
        .route("/-/api/v1/advisories", get(api::advisory_stats))
        .route("/-/api/v1/advisories/import", post(api::import_advisories))
        .merge(ui::router(&app))
        .route("/r/{*rest}", any(npm::entry))
        .fallback(npm::root)
        // Bodies are read with our own limit (see `npm::read_body`) for a clear JSON error.
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests (`serve`: the
/// connection limit and timeouts of `[limits]`).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = app.config.limits;
    serve::serve(router(app), listener, &limits, shutdown).await
}

async fn ping() -> impl IntoResponse {
    axum::Json(json!({}))
}

async fn ready(axum::extract::State(app): axum::extract::State<Arc<App>>) -> Response {
    match app.meta.last_change().await {
        Ok(_) => axum::Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}
