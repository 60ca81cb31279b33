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
use crate::auth::token::TokenSpec;
use crate::auth::web_login::Session;

/// What the tokens page calls the token a web login mints.
const TOKEN_NAME: &str = "npm login (web)";

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

/// The waiting login behind `id`, with its registry and that registry's URL.
async fn pending(app: &App, id: &str) -> UiResult<(Arc<Session>, gatehouse_store::Registry)> {
    let expired = || {
        UiError::Refused(
            StatusCode::NOT_FOUND,
            "This npm login link is unknown, used or expired (they last ten minutes). Run npm login again for a new one."
                .into(),
        )
    };
    let session = app.web_logins.pending(id).await.ok_or_else(expired)?;
    let registry = app.access.registry(&session.registry).await?.ok_or_else(expired)?;
    Ok((session, registry))
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
    let (_, registry) = pending(&app, &id).await?;
    Ok(page(&app, &viewer, id, &registry, false))
}

/// `POST /-/ui/npm-login/{id}`: mints the token and hands it to the polling terminal.
pub async fn approve(State(app): State<Arc<App>>, viewer: Viewer, Path(id): Path<String>) -> UiResult {
    let (session, registry) = pending(&app, &id).await?;
    let minted = app
        .services
        .issue_token(
            &viewer.actor(),
            viewer.user(),
            TokenSpec {
                name: Some(TOKEN_NAME.into()),
                registries: vec![registry.name.to_string()],
                ..TokenSpec::default()
            },
        )
        .await?;
    app.web_logins.complete(&id, &session, minted.secret).await;
    app.services
        .audit(
            &viewer.actor(),
            AuditAction::AuthLogin,
            Some(&registry),
            Some(format!(
                "npm web login approved in the web app, token {} issued",
                minted.key
            )),
        )
        .await;
    Ok(page(&app, &viewer, id, &registry, true))
}
