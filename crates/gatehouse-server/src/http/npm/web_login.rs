//! `npm login` with the browser (npm's default `auth-type=web`): the CLI starts a
//! session and polls for its token while the person approves on the web app's page
//! (`http::ui::npm_login`).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use super::Ctx;
use crate::auth::token::TokenSpec;
use crate::auth::web_login::{Poll, TOKEN_NAME};
use crate::http::error::{ApiError, ApiResult};

/// The web app's page where a login is approved.
fn approval_url(ctx: &Ctx, login_id: &str) -> String {
    format!("{}/-/ui/npm-login/{login_id}", ctx.app.public_url.as_str())
}

/// `POST /-/v1/login`: both URLs are absolute, because npm uses them exactly as given;
/// the poll keeps the `/r/{registry}` prefix, which says what the token is for.
pub async fn start(ctx: &Ctx) -> ApiResult<Response> {
    let (login_id, done_id) = ctx.app.web_logins.start(&ctx.registry.name).await?;
    Ok(axum::Json(json!({
        "loginUrl": approval_url(ctx, &login_id),
        "doneUrl": format!("{}/-/v1/done/{done_id}", ctx.base),
    }))
    .into_response())
}

/// `GET /-/v1/login/{id}`: where login URLs used to point; now the web app's page.
pub fn page(ctx: &Ctx, login_id: &str) -> Response {
    Redirect::to(&approval_url(ctx, login_id)).into_response()
}

/// `GET /-/v1/done/{id}`: 202 with `Retry-After` until the browser side is done; then
/// the token, limited to the registry logged in to, minted for whoever approved.
pub async fn poll(ctx: &Ctx, done_id: &str) -> ApiResult<Response> {
    match ctx.app.web_logins.poll(done_id).await? {
        Poll::Pending => Ok((
            StatusCode::ACCEPTED,
            [(header::RETRY_AFTER, "1")],
            axum::Json(json!({})),
        )
            .into_response()),
        Poll::Approved { user, registry } => {
            let user = ctx.app.meta.user(&user).await?.filter(|u| !u.disabled).ok_or_else(|| {
                ApiError::NotFound(format!(
                    "the account {user} that approved this login is gone or disabled; run npm login again"
                ))
            })?;
            let spec = TokenSpec {
                name: Some(TOKEN_NAME.into()),
                registries: vec![registry.to_string()],
                ..TokenSpec::default()
            };
            let minted = ctx.app.services.issue_token(&ctx.actor(), &user, spec).await?;
            Ok(axum::Json(json!({ "token": minted.secret })).into_response())
        }
        Poll::Unknown => Err(ApiError::NotFound(
            "this login session is unknown or has expired; run npm login again".into(),
        )),
    }
}
