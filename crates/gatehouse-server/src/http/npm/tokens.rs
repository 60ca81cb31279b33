//! `npm token list|create|revoke` (`/-/npm/v1/tokens`).

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use gatehouse_npm::packument::iso_time;
use gatehouse_store::{Token, now_millis};

use gatehouse_npm::name::PackageName;

use super::Ctx;
use crate::auth::cidr::Cidr;
use crate::auth::token::TokenSpec;
use crate::http::error::{ApiError, ApiResult};
use crate::services::TokenRef;

/// npm 11 sends granular-token fields; older clients send `readonly`. Every limit
/// asked for is either enforced or refused: a token never grants more than was asked.
#[derive(Deserialize, Default)]
struct CreateBody {
    password: Option<String>,
    name: Option<String>,
    #[serde(default)]
    readonly: bool,
    packages_and_scopes_permission: Option<String>,
    #[serde(default)]
    packages: Vec<String>,
    #[serde(default)]
    packages_all: bool,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    orgs: Vec<String>,
    orgs_permission: Option<String>,
    #[serde(default)]
    cidr_whitelist: Vec<String>,
    /// Days until expiry.
    expires: Option<u32>,
}

/// What a token request asks for, as Gatehouse can enforce it.
#[derive(Debug, PartialEq, Eq)]
struct Grant {
    readonly: bool,
    /// Package patterns (`lodash`, `@acme/*`); empty: every package.
    packages: Vec<String>,
    /// Whether the request said which permission it wants (npm 11 sends nothing for
    /// `--read-only`).
    permission_asked: bool,
}

/// How to ask npm 11 for a read-only token (its `--read-only` does not reach servers).
const READ_ONLY_HINT: &str =
    "this token can publish; for a read-only token run npm token create --packages-and-scopes-permission read-only";

fn grant(body: &CreateBody) -> Result<Grant, String> {
    let readonly = match body.packages_and_scopes_permission.as_deref() {
        None => body.readonly,
        Some("read-only") => true,
        Some("read-write") if body.readonly => {
            return Err("the request asks for read-only and read-write at once; ask for one".into());
        }
        Some("read-write") => false,
        Some("no-access") => {
            return Err(
                "packages_and_scopes_permission no-access: a Gatehouse token can always read its registry; \
                 ask for read-only or read-write"
                    .into(),
            );
        }
        Some(other) => {
            return Err(format!(
                "packages_and_scopes_permission {other:?} is not one of read-only, read-write"
            ));
        }
    };
    if !body.orgs.is_empty() || body.orgs_permission.is_some() {
        return Err(
            "Gatehouse has no organisations, so it cannot limit a token to orgs; limit it with --packages or --scopes"
                .into(),
        );
    }
    if body.expires == Some(0) {
        return Err("expires must be a number of days greater than zero".into());
    }
    let mut packages = Vec::new();
    if !body.packages_all {
        for name in &body.packages {
            PackageName::parse(name).map_err(|e| format!("packages: {e}"))?;
            packages.push(name.clone());
        }
        for scope in &body.scopes {
            let bare = scope.strip_prefix('@').unwrap_or(scope);
            let pattern = format!("@{bare}/*");
            PackageName::parse(&format!("@{bare}/x")).map_err(|_| format!("scopes: {scope:?} is not an npm scope"))?;
            packages.push(pattern);
        }
    }
    Ok(Grant {
        readonly,
        packages,
        permission_asked: body.readonly || body.packages_and_scopes_permission.is_some(),
    })
}

fn token_json(token: &Token) -> Value {
    json!({
        // npm prints `{token}…` itself: without this trim it shows `gth_abcdef……`.
        "token": token.display.trim_end_matches('…'),
        "key": token.key,
        "name": token.name,
        "readonly": token.readonly,
        "cidr_whitelist": (!token.cidr_whitelist.is_empty()).then_some(&token.cidr_whitelist),
        "created": iso_time(token.created_at),
        "updated": iso_time(token.last_used_at.unwrap_or(token.created_at)),
        "expires": token.expires_at.map(iso_time),
    })
}

pub async fn list(ctx: &Ctx) -> ApiResult<Response> {
    let principal = ctx.require_user()?;
    let tokens = ctx.app.meta.tokens_of(principal.user.id).await?;
    let objects: Vec<Value> = tokens.iter().map(token_json).collect();
    // npm follows `urls.next` and crashes without `urls`.
    Ok(axum::Json(json!({ "objects": objects, "total": objects.len(), "urls": {} })).into_response())
}

pub async fn create(ctx: &Ctx, body: &Bytes) -> ApiResult<Response> {
    let principal = ctx.require_writer()?;
    let body: CreateBody =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid token request: {e}")))?;
    let password = body
        .password
        .clone()
        .ok_or_else(|| ApiError::WrongPassword("creating a token needs your password".into()))?;
    ctx.app
        .auth
        .by_password(&principal.user.name, &password, ctx.client_ip)
        .await?;
    for cidr in &body.cidr_whitelist {
        Cidr::parse(cidr).map_err(ApiError::bad_request)?;
    }
    let grant = grant(&body).map_err(ApiError::BadRequest)?;
    let readonly = grant.readonly;
    let expires_at = body.expires.map(|days| now_millis() + i64::from(days) * 86_400_000);
    // Tokens made through a registry's URL work on that registry only.
    let minted = ctx
        .app
        .services
        .issue_token(
            &ctx.actor(),
            &principal.user,
            TokenSpec {
                name: body.name.clone(),
                readonly,
                cidr_whitelist: body.cidr_whitelist.clone(),
                registries: vec![ctx.registry.name.to_string()],
                packages: grant.packages.clone(),
                expires_at,
                published_by: None,
            },
        )
        .await?;
    let now = iso_time(now_millis());
    // npm prints the `npm-notice` header: say what the token may do when the request
    // did not say (npm 11's `--read-only` sends nothing).
    let notice = if grant.permission_asked {
        None
    } else {
        Some([("npm-notice", READ_ONLY_HINT)])
    };
    Ok((
        StatusCode::CREATED,
        notice,
        axum::Json(json!({
            "token": minted.secret,
            "key": minted.key,
            "name": body.name,
            "readonly": readonly,
            "cidr_whitelist": (!body.cidr_whitelist.is_empty()).then_some(&body.cidr_whitelist),
            "created": now,
            "updated": now,
            "expires": expires_at.map(iso_time),
            "packages": (!grant.packages.is_empty()).then_some(&grant.packages),
        })),
    )
        .into_response())
}

pub async fn revoke(ctx: &Ctx, key: &str) -> ApiResult<Response> {
    let principal = ctx.require_writer()?;
    ctx.app
        .services
        .revoke_token(
            &ctx.actor(),
            Some(principal.user.id),
            TokenRef::Key(key),
            "npm token revoke",
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: serde_json::Value) -> CreateBody {
        serde_json::from_value(json).expect("a token request")
    }

    #[test]
    fn npm_11_requests_grant_what_they_ask() {
        // `npm token create --read-only --cidr …`: npm 11 sends no permission at all.
        let plain = grant(&body(
            json!({"name": null, "password": "p", "cidr_whitelist": ["10.0.0.0/8"]}),
        ));
        assert_eq!(
            plain,
            Ok(Grant {
                readonly: false,
                packages: vec![],
                permission_asked: false
            })
        );
        let read_only = grant(&body(
            json!({"password": "p", "packages_and_scopes_permission": "read-only"}),
        ));
        assert!(
            read_only.as_ref().is_ok_and(|g| g.readonly && g.permission_asked),
            "{read_only:?}"
        );
        let old_npm = grant(&body(json!({"password": "p", "readonly": true})));
        assert!(old_npm.as_ref().is_ok_and(|g| g.readonly), "{old_npm:?}");
        let limited = grant(&body(json!({
            "password": "p", "packages": ["lodash", "@acme/ui"], "scopes": ["@corp", "tools"],
            "packages_and_scopes_permission": "read-write"
        })));
        assert_eq!(
            limited.map(|g| g.packages),
            Ok(vec![
                "lodash".into(),
                "@acme/ui".into(),
                "@corp/*".into(),
                "@tools/*".into()
            ])
        );
        let all = grant(&body(json!({"password": "p", "packages_all": true, "packages": ["x"]})));
        assert_eq!(all.map(|g| g.packages), Ok(vec![]));
    }

    #[test]
    fn limits_gatehouse_cannot_enforce_are_refused() {
        for (request, says) in [
            (json!({"packages_and_scopes_permission": "no-access"}), "no-access"),
            (
                json!({"orgs": ["acme"], "orgs_permission": "read-only"}),
                "no organisations",
            ),
            (json!({"orgs_permission": "read-write"}), "no organisations"),
            (json!({"packages_and_scopes_permission": "admin"}), "not one of"),
            (
                json!({"readonly": true, "packages_and_scopes_permission": "read-write"}),
                "at once",
            ),
            (json!({"packages": ["../etc"]}), "packages:"),
            (json!({"scopes": ["@Not A Scope"]}), "not an npm scope"),
            (json!({"expires": 0}), "greater than zero"),
        ] {
            let refused = grant(&body(request.clone())).expect_err("refused");
            assert!(refused.contains(says), "{request}: {refused}");
        }
    }
}
