//! Signing in and out of the web app: the same accounts, password checks and
//! failure limits as `npm login`.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use gatehouse_store::AuditAction;

use super::{Nav, UiResult, Viewer, render, session_cookie_header};
use crate::app::App;
use crate::auth::AuthError;
use crate::http::extract::{ClientIp, LimitedBody};
use crate::services::Actor;

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage {
    nav: Nav,
    next: String,
    username: String,
    error: Option<String>,
    done: Option<String>,
    /// Registries anyone may read, so a visitor learns where to point a client.
    public: Vec<String>,
}

async fn public_registries(app: &App) -> Vec<String> {
    app.meta
        .registries()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.public_read)
        .map(|r| format!("{}/", app.registry_base(r)))
        .collect()
}

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
    done: Option<String>,
}

/// Only a path of this web app is a place to go back to (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with("/-/ui/") && !next.contains("//") && !next.contains('\\') => next.to_owned(),
        _ => "/-/ui/".to_owned(),
    }
}

/// `GET /-/ui/login`
pub async fn form(State(app): State<Arc<App>>, Query(query): Query<LoginQuery>) -> Response {
    render(&LoginPage {
        nav: Nav::anonymous(),
        next: safe_next(query.next.as_deref()),
        username: String::new(),
        error: None,
        done: query.done,
        public: public_registries(&app).await,
    })
}

#[derive(Deserialize)]
pub struct SignIn {
    username: String,
    password: String,
    next: Option<String>,
}

/// `POST /-/ui/login`
pub async fn sign_in(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> UiResult {
    let request: SignIn = super::form(&body)?;
    let next = safe_next(request.next.as_deref());
    let actor = Actor {
        name: Some(request.username.clone()),
        client_addr: Some(ip),
    };
    let public = public_registries(&app).await;
    let refused = |status: StatusCode, message: &str| {
        let page = LoginPage {
            nav: Nav::anonymous(),
            next: next.clone(),
            username: request.username.clone(),
            error: Some(message.to_owned()),
            done: None,
            public: public.clone(),
        };
        (status, render(&page)).into_response()
    };
    let principal = match app.auth.by_password(&request.username, &request.password, ip).await {
        Ok(principal) => principal,
        Err(e @ (AuthError::BadPassword | AuthError::RateLimited | AuthError::UserDisabled(_))) => {
            tracing::warn!(user = request.username, client = %ip, "web sign-in failed");
            app.services
                .audit(&actor, AuditAction::AuthLoginFailed, None, Some("web app".into()))
                .await;
            return Ok(match e {
                AuthError::RateLimited => refused(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many failed sign-ins. Wait 15 minutes and try again, or ask an administrator to unlock the account.",
                ),
                AuthError::UserDisabled(_) => {
                    refused(StatusCode::FORBIDDEN, "This account is disabled; ask an administrator.")
                }
                _ => refused(StatusCode::UNAUTHORIZED, "Incorrect username or password."),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let session = app.sessions.start(&principal.user, ip, user_agent).await?;
    app.services
        .audit(&actor, AuditAction::AuthLogin, None, Some("web app".into()))
        .await;
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie_header(&app, &session, app.sessions.ttl().as_secs()),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct SignOut {
    #[serde(default)]
    everywhere: Option<String>,
}

/// `POST /-/ui/logout`: this session, or (`everywhere`) every session of the user.
pub async fn sign_out(State(app): State<Arc<App>>, viewer: Viewer, LimitedBody(body): LimitedBody) -> UiResult {
    let request: SignOut = super::form(&body)?;
    let flash = if request.everywhere.is_some() {
        let ended = app.sessions.end_all(viewer.user()).await?;
        format!("Signed out everywhere ({ended} sessions).")
    } else {
        app.sessions.end(&viewer.session_id).await?;
        "Signed out.".to_owned()
    };
    let mut response = super::see_other("/-/ui/login", &flash);
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie_header(&app, "", 0));
    Ok(response)
}
