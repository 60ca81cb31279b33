//! `npm login` with the browser (npm's default `auth-type=web`): the URL npm prints
//! opens this page. A signed-in person approves with one button (others sign in
//! first, then come back here); the terminal then receives a token limited to the
//! registry it logged in to.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use gatehouse_store::AuditAction;

use super::{Nav, UiError, UiResult, Viewer, render};
use crate::app::App;
use crate::auth::web_login::TOKEN_NAME;

#[derive(Template)]
#[template(path = "ui/npm_login.html")]
struct ApprovePage {
    nav: Nav,
    id: String,
    registry: String,
    registry_url: String,
    approved: bool,
    token_name: &'static str,
}

fn expired() -> UiError {
    UiError::Refused(
        StatusCode::NOT_FOUND,
        "This npm login link is unknown, used or expired (they last ten minutes). Run npm login again for a new one."
            .into(),
    )
}

/// The registry of the waiting login behind `id`.
async fn pending(app: &App, id: &str) -> UiResult<gatehouse_store::Registry> {
    let pending = app.web_logins.pending(id).await?.ok_or_else(expired)?;
    app.access.registry(&pending.registry).await?.ok_or_else(expired)
}

fn page(app: &App, viewer: &Viewer, id: String, registry: &gatehouse_store::Registry, approved: bool) -> Response {
    render(&ApprovePage {
        nav: viewer.nav(),
        id,
        registry: registry.name.to_string(),
        registry_url: format!("{}/", app.registry_base(registry)),
        approved,
        token_name: TOKEN_NAME,
    })
}

/// `GET /-/ui/npm-login/{id}`
pub async fn show(State(app): State<Arc<App>>, viewer: Viewer, Path(id): Path<String>) -> UiResult {
    let registry = pending(&app, &id).await?;
    Ok(page(&app, &viewer, id, &registry, false))
}

/// `POST /-/ui/npm-login/{id}`: approves; the polling terminal then collects a token
/// limited to the registry, minted for this person.
pub async fn approve(State(app): State<Arc<App>>, viewer: Viewer, Path(id): Path<String>) -> UiResult {
    pending(&app, &id).await?;
    let approved = app.web_logins.approve(&id, &viewer.user().name).await?;
    let registry = app
        .access
        .registry(&approved.ok_or_else(expired)?.registry)
        .await?
        .ok_or_else(expired)?;
    app.services
        .audit(
            &viewer.actor(),
            AuditAction::AuthLogin,
            Some(&registry),
            Some("npm web login approved in the web app; the terminal collects its token".to_owned()),
        )
        .await;
    Ok(page(&app, &viewer, id, &registry, true))
}
