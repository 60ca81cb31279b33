//! Accounts over the npm protocol: legacy (CouchDB) login, whoami, logout, user lookup.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use gatehouse_store::{AuditAction, User};

use super::Ctx;
use crate::auth::AuthError;
use crate::auth::token::{self, TokenSpec};
use crate::http::error::{ApiError, ApiResult};
use crate::services::{Actor, Creation, NewUser, ServiceError, TokenRef};

#[derive(Deserialize)]
struct LoginBody {
    name: String,
    password: String,
    email: Option<String>,
}

/// `PUT /-/user/org.couchdb.user:{name}`: checks the password (or creates the user
/// when registration is allowed) and answers with a new token.
pub async fn login(ctx: &Ctx, url_name: &str, body: &Bytes) -> ApiResult<Response> {
    let body: LoginBody = serde_json::from_slice(body)
        .map_err(|_| ApiError::BadRequest("login body must be JSON with \"name\" and \"password\"".into()))?;
    if body.name != url_name {
        return Err(ApiError::BadRequest(
            "the user name in the body does not match the URL".into(),
        ));
    }
    if token::looks_like_token(&body.password) {
        return login_with_token(ctx, &body).await;
    }
    let user = match ctx
        .app
        .auth
        .by_password(&body.name, &body.password, ctx.client_ip)
        .await
    {
        Ok(principal) => principal.user,
        Err(AuthError::BadPassword) if ctx.app.config.allow_registration => register(ctx, &body).await?,
        Err(AuthError::BadPassword) => {
            ctx.audit_login(&body.name, AuditAction::AuthLoginFailed, None).await;
            return Err(ApiError::WrongPassword(
                "incorrect username or password (accounts are created by an administrator)".into(),
            ));
        }
        Err(e) => {
            ctx.audit_login(&body.name, AuditAction::AuthLoginFailed, None).await;
            return Err(e.into());
        }
    };
    // A login token works on the registry it was issued for, and nowhere else.
    let minted = ctx
        .app
        .services
        .issue_token(
            &user_actor(ctx, &user),
            &user,
            TokenSpec {
                name: Some("npm login".into()),
                registries: vec![ctx.registry.name.to_string()],
                ..TokenSpec::default()
            },
        )
        .await?;
    ctx.audit_login(
        &user.name,
        AuditAction::AuthLogin,
        Some(format!("token {} issued", minted.key)),
    )
    .await;
    Ok(logged_in(&user.name, &minted.secret))
}

/// The Bytesafe flow: the "password" is a token (shown once in the web app or made by
/// `gatehouse token create`). The client gets that same token back, so logging in
/// never yields more than the token already allowed.
async fn login_with_token(ctx: &Ctx, body: &LoginBody) -> ApiResult<Response> {
    let principal = match ctx
        .app
        .auth
        .by_token(&body.password, Some(&body.name), ctx.client_ip)
        .await
    {
        Ok(principal) if principal.may_use_registry(ctx.registry.name.as_str()) => principal,
        Ok(_) => {
            return Err(ApiError::Forbidden(format!(
                "this token is not valid for registry \"{}\"",
                ctx.registry.name
            )));
        }
        Err(e) => {
            ctx.audit_login(&body.name, AuditAction::AuthLoginFailed, None).await;
            return Err(match e {
                AuthError::AddressRefused(_) => e.into(),
                // Typed at the password prompt, so it's answered like a wrong password.
                _ => ApiError::WrongPassword("incorrect username or token".into()),
            });
        }
    };
    let key = principal.token.as_ref().map_or("?", |t| t.key.as_str());
    ctx.audit_login(
        &principal.user.name,
        AuditAction::AuthLogin,
        Some(format!("token {key} used as password")),
    )
    .await;
    Ok(logged_in(&principal.user.name, &body.password))
}

/// What npm expects from a successful login: CouchDB's answer plus the token.
fn logged_in(user: &str, token: &str) -> Response {
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "ok": true,
            "id": format!("org.couchdb.user:{user}"),
            "rev": "1-gatehouse",
            "token": token,
        })),
    )
        .into_response()
}

/// Self-registration (only when the config allows it). An existing name with a wrong
/// password stays a plain login failure.
async fn register(ctx: &Ctx, body: &LoginBody) -> ApiResult<User> {
    let new = NewUser {
        name: &body.name,
        email: body.email.as_deref(),
        password: body.password.clone(),
        admin: false,
    };
    let actor = Actor {
        name: Some(body.name.clone()),
        client_addr: Some(ctx.client_ip),
    };
    match ctx.app.services.create_user(&actor, new, Creation::Registration).await {
        Ok(user) => Ok(user),
        Err(ServiceError::Conflict(_)) => {
            ctx.audit_login(&body.name, AuditAction::AuthLoginFailed, None).await;
            Err(ApiError::WrongPassword("incorrect username or password".into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// A user acting for themselves, from this request's address.
fn user_actor(ctx: &Ctx, user: &User) -> Actor {
    Actor {
        name: Some(user.name.clone()),
        client_addr: Some(ctx.client_ip),
    }
}

pub fn whoami(ctx: &Ctx) -> ApiResult<Response> {
    let principal = ctx.require_user()?;
    Ok(axum::Json(json!({ "username": principal.user.name })).into_response())
}

/// `DELETE /-/user/token/{token}` (npm logout): revokes the caller's own token.
pub async fn logout(ctx: &Ctx, secret: &str) -> ApiResult<Response> {
    let principal = ctx.require_user()?;
    ctx.app
        .services
        .revoke_token(
            &ctx.actor(),
            Some(principal.user.id),
            TokenRef::Secret(secret),
            "npm logout",
        )
        .await?;
    Ok(axum::Json(json!({ "ok": true })).into_response())
}

/// `GET /-/user/org.couchdb.user:{name}` (npm owner add looks users up here).
pub async fn get_user(ctx: &Ctx, name: &str) -> ApiResult<Response> {
    ctx.require_user()?;
    let user = ctx
        .app
        .meta
        .user(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user named \"{name}\"")))?;
    Ok(axum::Json(json!({
        "_id": format!("org.couchdb.user:{}", user.name),
        "name": user.name,
        "email": user.email.unwrap_or_default(),
    }))
    .into_response())
}

/// `GET /-/npm/v1/user`: `npm profile get` (and `npm profile set` reads it first).
pub fn profile(ctx: &Ctx) -> ApiResult<Response> {
    let user = &ctx.require_user()?.user;
    Ok(axum::Json(profile_json(user)).into_response())
}

fn profile_json(user: &User) -> serde_json::Value {
    let created = gatehouse_npm::packument::iso_time(user.created_at);
    json!({
        "name": user.name,
        "email": user.email.clone().unwrap_or_default(),
        "email_verified": false,
        "tfa": false,
        "cidr_whitelist": null,
        "fullname": "",
        "homepage": "",
        "freenode": "",
        "twitter": "",
        "github": "",
        "created": created,
        "updated": created,
    })
}

/// npm sends the profile's other writable fields back as it read them; only the
/// password is acted on.
#[derive(Deserialize)]
struct ProfileChange {
    password: Option<PasswordChange>,
}

#[derive(Deserialize)]
struct PasswordChange {
    old: String,
    new: String,
}

/// `POST /-/npm/v1/user`: `npm profile set password` (the old password is checked and
/// counts as a failed login when wrong). Other profile fields are not kept here.
pub async fn set_profile(ctx: &Ctx, body: &Bytes) -> ApiResult<Response> {
    let principal = ctx.require_user()?;
    let change: ProfileChange = serde_json::from_slice(body)
        .map_err(|_| ApiError::BadRequest("the body must be JSON with {\"password\": {\"old\", \"new\"}}".into()))?;
    let Some(password) = change.password else {
        return Err(ApiError::BadRequest(
            "only the password can be changed here (npm profile set password); Gatehouse keeps no other profile fields"
                .into(),
        ));
    };
    let name = principal.user.name.clone();
    let checked = ctx.app.auth.by_password(&name, &password.old, ctx.client_ip).await;
    let user = match checked {
        Ok(principal) => principal.user,
        Err(AuthError::BadPassword) => {
            ctx.audit_login(&name, AuditAction::AuthLoginFailed, Some("password change".into()))
                .await;
            return Err(ApiError::WrongPassword("the current password is not right".into()));
        }
        Err(e) => return Err(e.into()),
    };
    ctx.app
        .services
        .set_password(&user_actor(ctx, &user), &user, password.new)
        .await?;
    Ok(axum::Json(profile_json(&user)).into_response())
}
