//! The Tokens page: this person's tokens with their limits, create and revoke. A new
//! token's secret is shown on the answer to the form and never again.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use gatehouse_store::registry::RegistryName;
use gatehouse_store::{Millis, Token, now_millis};

use super::{Nav, UiError, UiResult, Viewer, form, render, see_other, when};
use crate::auth::cidr::Cidr;
use crate::auth::token::TokenSpec;
use crate::http::extract::LimitedBody;
use crate::services::{TokenRef, parse_expiry};

/// CIDR ranges from a form field (comma or space separated), each checked.
pub fn cidrs(field: Option<&str>) -> UiResult<Vec<String>> {
    let mut out = Vec::new();
    for raw in field.unwrap_or_default().split([',', ' ', '\n']).map(str::trim) {
        if raw.is_empty() {
            continue;
        }
        Cidr::parse(raw).map_err(|e| {
            UiError::Refused(
                StatusCode::BAD_REQUEST,
                format!("Allowed addresses: {e}. No token was created."),
            )
        })?;
        out.push(raw.to_owned());
    }
    Ok(out)
}

/// An expiry from a form field (`30d`, `12h` or an RFC 3339 time); empty: never.
pub fn expiry(field: Option<&str>) -> UiResult<Option<Millis>> {
    match field.map(str::trim).filter(|f| !f.is_empty()) {
        None => Ok(None),
        Some(text) => parse_expiry(text, now_millis())
            .map(Some)
            .map_err(|e| UiError::Refused(StatusCode::BAD_REQUEST, format!("Expires: {e}. No token was created."))),
    }
}

struct TokenRow {
    key: String,
    display: String,
    name: String,
    limits: String,
    created: String,
    last_used: String,
    expires: String,
}

impl TokenRow {
    fn new(token: &Token) -> Self {
        let mut limits = vec![
            if token.readonly {
                "read-only"
            } else {
                "read and publish"
            }
            .to_owned(),
        ];
        if !token.registries.is_empty() {
            limits.push(format!("registries {}", token.registries.join(", ")));
        }
        if !token.packages.is_empty() {
            limits.push(format!("packages {}", token.packages.join(", ")));
        }
        if !token.cidr_whitelist.is_empty() {
            limits.push(format!("from {}", token.cidr_whitelist.join(", ")));
        }
        TokenRow {
            key: token.key.clone(),
            display: token.display.clone(),
            name: token.name.clone().unwrap_or_default(),
            limits: limits.join("; "),
            created: when(token.created_at),
            last_used: token.last_used_at.map_or_else(|| "never".to_owned(), when),
            expires: token.expires_at.map_or_else(|| "never".to_owned(), when),
        }
    }
}

#[derive(Template)]
#[template(path = "ui/tokens.html")]
struct TokensPage {
    nav: Nav,
    done: Option<String>,
    tokens: Vec<TokenRow>,
    registries: Vec<String>,
    /// The token just created, shown this once.
    created: Option<String>,
}

async fn page(app: &Arc<crate::app::App>, viewer: &Viewer, done: Option<String>, created: Option<String>) -> UiResult {
    let now = now_millis();
    let tokens = app
        .meta
        .tokens_of(viewer.user().id)
        .await?
        .iter()
        .filter(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|at| at > now))
        .map(TokenRow::new)
        .collect();
    let registries = app
        .services
        .registries()
        .await?
        .into_iter()
        .map(|r| r.name.to_string())
        .collect();
    Ok(render(&TokensPage {
        nav: viewer.nav(),
        done,
        tokens,
        registries,
        created,
    }))
}

/// `GET /-/ui/tokens`
pub async fn list(
    State(app): State<Arc<crate::app::App>>,
    viewer: Viewer,
    Query(query): Query<TokensQuery>,
) -> UiResult {
    match &query.token {
        Some(id) => match app.shown_once.take(&app.services, &viewer, id).await? {
            Some((secret, name)) => {
                let done = format!("Token {name} created. Copy it now: it is not shown again.");
                page(&app, &viewer, Some(done), Some(secret)).await
            }
            None => {
                let done = "That token was shown once and is not shown again; create another if you did not copy it.";
                page(&app, &viewer, Some(done.to_owned()), None).await
            }
        },
        None => page(&app, &viewer, query.done, None).await,
    }
}

#[derive(Deserialize, Default)]
pub struct TokensQuery {
    done: Option<String>,
    /// A token just created, to show once.
    token: Option<String>,
}

#[derive(Deserialize)]
pub struct NewToken {
    name: String,
    /// A registry name; empty: every registry this person may use.
    registry: Option<String>,
    /// "on": may publish.
    publish: Option<String>,
    cidr: Option<String>,
    expires: Option<String>,
}

/// `POST /-/ui/tokens`: a new token, minted and shown once by the page this redirects to.
pub async fn create(
    State(app): State<Arc<crate::app::App>>,
    viewer: Viewer,
    LimitedBody(body): LimitedBody,
) -> UiResult {
    let request: NewToken = form(&body)?;
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(UiError::Refused(
            StatusCode::BAD_REQUEST,
            "Give the token a name (up to 100 characters) so you can tell it apart later. No token was created.".into(),
        ));
    }
    let mut registries = Vec::new();
    if let Some(registry) = request.registry.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        // The token may only be limited to a registry this person can see.
        let name = RegistryName::parse(registry)
            .map_err(|e| UiError::Refused(StatusCode::BAD_REQUEST, format!("Registry: {e}")))?;
        viewer
            .registry(&app, name.as_str(), gatehouse_store::registry::Role::Read)
            .await?;
        registries.push(name.to_string());
    }
    let spec = TokenSpec {
        name: Some(name.to_owned()),
        readonly: request.publish.is_none(),
        cidr_whitelist: cidrs(request.cidr.as_deref())?,
        registries,
        expires_at: expiry(request.expires.as_deref())?,
        ..TokenSpec::default()
    };
    let id = app.shown_once.keep(&viewer, spec, name.to_owned()).await?;
    Ok(Redirect::to(&format!("/-/ui/tokens?token={id}")).into_response())
}

/// `POST /-/ui/tokens/{key}/revoke`: only this person's own tokens.
pub async fn revoke(State(app): State<Arc<crate::app::App>>, viewer: Viewer, Path(key): Path<String>) -> UiResult {
    app.services
        .revoke_token(
            &viewer.actor(),
            Some(viewer.user().id),
            TokenRef::Key(&key),
            "revoked in the web app",
        )
        .await?;
    Ok(see_other("/-/ui/tokens", "Token revoked: it stops working at once."))
}
