//! `npm login` with the browser (npm's default `auth-type=web`): the CLI starts a
//! session, the person signs in on our page, the CLI polls for its token.

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use gatehouse_store::AuditAction;

use super::Ctx;
use crate::auth::AuthError;
use crate::auth::token::TokenSpec;
use crate::auth::web_login::Poll;
use crate::http::error::{ApiError, ApiResult};
use crate::services::Actor;

/// `POST /-/v1/login`: both URLs are absolute and keep the `/r/{registry}` prefix,
/// because npm uses them exactly as given.
pub async fn start(ctx: &Ctx) -> ApiResult<Response> {
    let (login_id, done_id) = ctx.app.web_logins.start(ctx.registry.name.clone()).await;
    Ok(axum::Json(json!({
        "loginUrl": format!("{}/-/v1/login/{login_id}", ctx.base),
        "doneUrl": format!("{}/-/v1/done/{done_id}", ctx.base),
    }))
    .into_response())
}

/// `GET /-/v1/done/{id}`: 202 with `Retry-After` until the browser side is done.
pub async fn poll(ctx: &Ctx, done_id: &str) -> ApiResult<Response> {
    match ctx.app.web_logins.poll(done_id).await {
        Poll::Pending => Ok((
            StatusCode::ACCEPTED,
            [(header::RETRY_AFTER, "1")],
            axum::Json(json!({})),
        )
            .into_response()),
        Poll::Done(token) => Ok(axum::Json(json!({ "token": token })).into_response()),
        Poll::Unknown => Err(ApiError::NotFound(
            "this login session is unknown or has expired; run npm login again".into(),
        )),
    }
}

pub async fn page(ctx: &Ctx, login_id: &str) -> ApiResult<Response> {
    match ctx.app.web_logins.pending(login_id).await {
        Some(session) if session.registry == ctx.registry.name => {
            Ok(html(StatusCode::OK, &form_page(ctx, login_id, &session.csrf, None)))
        }
        _ => Ok(expired_page()),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    csrf: String,
}

pub async fn submit(ctx: &Ctx, login_id: &str, body: &Bytes) -> ApiResult<Response> {
    let Some(session) = ctx.app.web_logins.pending(login_id).await else {
        return Ok(expired_page());
    };
    let form: LoginForm = serde_urlencoded::from_bytes(body)
        .map_err(|_| ApiError::BadRequest("the form must carry username, password and csrf".into()))?;
    // Constant-time enough: both are random 32-character values we generated.
    if session.registry != ctx.registry.name || form.csrf != session.csrf {
        return Err(ApiError::Forbidden(
            "this form does not belong to this login session".into(),
        ));
    }
    let user = match ctx
        .app
        .auth
        .by_password(&form.username, &form.password, ctx.client_ip)
        .await
    {
        Ok(principal) => principal.user,
        Err(AuthError::BadPassword) => {
            ctx.audit_login(&form.username, AuditAction::AuthLoginFailed, Some("web login".into()))
                .await;
            let page = form_page(ctx, login_id, &session.csrf, Some("Incorrect username or password."));
            return Ok(html(StatusCode::UNAUTHORIZED, &page));
        }
        Err(AuthError::RateLimited) => {
            ctx.audit_login(&form.username, AuditAction::AuthLoginFailed, Some("web login".into()))
                .await;
            let page = form_page(
                ctx,
                login_id,
                &session.csrf,
                Some("Too many failed logins. Wait 15 minutes and try again."),
            );
            return Ok(html(StatusCode::TOO_MANY_REQUESTS, &page));
        }
        Err(e) => return Err(e.into()),
    };
    let actor = Actor {
        name: Some(user.name.clone()),
        client_addr: Some(ctx.client_ip),
    };
    let minted = ctx
        .app
        .services
        .issue_token(
            &actor,
            &user,
            TokenSpec {
                name: Some("npm login (web)".into()),
                registries: vec![ctx.registry.name.to_string()],
                ..TokenSpec::default()
            },
        )
        .await?;
    ctx.app.web_logins.complete(login_id, &session, minted.secret).await;
    ctx.audit_login(
        &user.name,
        AuditAction::AuthLogin,
        Some(format!("web login, token {} issued", minted.key)),
    )
    .await;
    let body = format!(
        "<h1>Signed in</h1><p>You are signed in to <b>{}</b> as <b>{}</b>. Return to your terminal; you can close this window.</p>",
        escape(ctx.registry.name.as_str()),
        escape(&user.name)
    );
    Ok(html(StatusCode::OK, &layout("Signed in", &body)))
}

fn form_page(ctx: &Ctx, login_id: &str, csrf: &str, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))
    });
    let body = format!(
        r#"<h1>Sign in to {registry}</h1>
<p>Your terminal is waiting for this sign-in (npm login for <code>{base}/</code>).</p>
{error}
<form method="post" action="{base}/-/v1/login/{login_id}">
  <input type="hidden" name="csrf" value="{csrf}">
  <label>Username <input name="username" autocomplete="username" required autofocus></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <button type="submit">Sign in</button>
</form>
<details><summary>Other clients and CI</summary>
<p>npm, pnpm, bun: <code>npm login --registry {base}/</code>, or in <code>.npmrc</code>:
<code>//{host_path}/:_authToken=${{NPM_TOKEN}}</code>.<br>
yarn berry: <code>npmRegistryServer: "{base}/"</code>, <code>npmAuthToken: "${{NPM_TOKEN}}"</code>, <code>npmAlwaysAuth: true</code> in <code>.yarnrc.yml</code>.<br>
Unity: <code>[npmAuth."{base}/"]</code> with <code>token = "…"</code> in <code>~/.upmconfig.toml</code>.</p></details>"#,
        registry = escape(ctx.registry.name.as_str()),
        base = escape(&ctx.base),
        host_path = escape(ctx.base.split_once("://").map_or(ctx.base.as_str(), |(_, rest)| rest)),
        login_id = escape(login_id),
        csrf = escape(csrf),
    );
    layout("Sign in", &body)
}

fn expired_page() -> Response {
    html(
        StatusCode::NOT_FOUND,
        &layout(
            "Login expired",
            "<h1>This login link has expired</h1><p>Run <code>npm login</code> again to get a new one.</p>",
        ),
    )
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · Gatehouse</title>\
<meta name=\"viewport\" content=\"width=device-width\"><style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem}}\
label{{display:block;margin:.75rem 0}}input{{display:block;width:100%;padding:.4rem}}button{{padding:.5rem 1.5rem}}.error{{color:#b00}}</style></head>\
<body>{body}</body></html>",
        escape(title)
    )
}

fn html(status: StatusCode, page: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // The page must not be framed (clickjacking) nor load anything else.
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
            ),
        ],
        page.to_owned(),
    )
        .into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
