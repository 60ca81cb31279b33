//! Users (administrators only): create, make admin, disable, reset a password, and
//! the roles each has per registry. Every change goes through the same `Services`
//! as `gatehouse user …` and the admin API.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use gatehouse_store::registry::{RegistryName, Role};

use super::registries::Flash;
use super::{Nav, UiError, UiResult, Viewer, form, render, see_other, when};
use crate::app::App;
use crate::http::extract::LimitedBody;
use crate::services::{Creation, NewUser};

const PAGE: &str = "/-/ui/users";

/// Only administrators manage users.
pub fn require_admin(viewer: &Viewer, what: &str) -> UiResult<()> {
    if viewer.user().is_admin {
        Ok(())
    } else {
        Err(UiError::Refused(
            StatusCode::FORBIDDEN,
            format!("{what} is for administrators; ask one to make you an administrator or to do this for you."),
        ))
    }
}

struct UserRow {
    name: String,
    email: String,
    admin: bool,
    disabled: bool,
    created: String,
    /// `registry: role`, one per grant.
    grants: Vec<String>,
}

#[derive(Template)]
#[template(path = "ui/users.html")]
struct UsersPage {
    nav: Nav,
    done: Option<String>,
    users: Vec<UserRow>,
    registries: Vec<String>,
}

/// `GET /-/ui/users`
pub async fn list(State(app): State<Arc<App>>, viewer: Viewer, Query(flash): Query<Flash>) -> UiResult {
    require_admin(&viewer, "The Users page")?;
    let mut grants: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for grant in app.meta.grants().await? {
        grants
            .entry(grant.user)
            .or_default()
            .push(format!("{}: {}", grant.registry, grant.role.as_str()));
    }
    let mut users: Vec<UserRow> = app
        .meta
        .users()
        .await?
        .into_iter()
        .map(|u| UserRow {
            grants: grants.remove(&u.name).unwrap_or_default(),
            email: u.email.unwrap_or_default(),
            admin: u.is_admin,
            disabled: u.disabled,
            created: when(u.created_at),
            name: u.name,
        })
        .collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let registries = app
        .meta
        .registries()
        .await?
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    Ok(render(&UsersPage {
        nav: viewer.nav(),
        done: flash.done,
        users,
        registries,
    }))
}

#[derive(Deserialize)]
pub struct CreateForm {
    name: String,
    #[serde(default)]
    email: String,
    password: String,
    admin: Option<String>,
}

/// `POST /-/ui/users`
pub async fn create(State(app): State<Arc<App>>, viewer: Viewer, LimitedBody(body): LimitedBody) -> UiResult {
    require_admin(&viewer, "Creating users")?;
    let request: CreateForm = form(&body)?;
    let email = request.email.trim();
    let user = app
        .services
        .create_user(
            &viewer.actor(),
            NewUser {
                name: request.name.trim(),
                email: (!email.is_empty()).then_some(email),
                password: request.password,
                admin: request.admin.is_some(),
            },
            Creation::ByAdministrator,
        )
        .await?;
    let role = if user.is_admin { "administrator" } else { "user" };
    Ok(see_other(PAGE, &format!("Created {role} {}.", user.name)))
}

#[derive(Deserialize)]
pub struct ChangeForm {
    /// admin | user | disable | enable
    change: String,
}

/// `POST /-/ui/users/{name}`: make admin or not, disable or enable.
pub async fn change(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(name): Path<String>,
    LimitedBody(body): LimitedBody,
) -> UiResult {
    require_admin(&viewer, "Changing users")?;
    let request: ChangeForm = form(&body)?;
    let user = app.services.user(&name).await?;
    let actor = viewer.actor();
    let done = match request.change.as_str() {
        "admin" => {
            app.services.set_user_admin(&actor, &user, true).await?;
            format!("{} is now an administrator.", user.name)
        }
        "user" => {
            app.services.set_user_admin(&actor, &user, false).await?;
            format!("{} is no longer an administrator.", user.name)
        }
        "disable" => {
            if user.id == viewer.user().id {
                return Err(UiError::Refused(
                    StatusCode::CONFLICT,
                    "You cannot disable your own account; another administrator can.".into(),
                ));
            }
            app.services.set_user_disabled(&actor, &user, true).await?;
            format!(
                "{} is disabled: they cannot sign in and their tokens are refused.",
                user.name
            )
        }
        "enable" => {
            app.services.set_user_disabled(&actor, &user, false).await?;
            format!("{} is enabled again.", user.name)
        }
        other => {
            return Err(UiError::Refused(
                StatusCode::BAD_REQUEST,
                format!("Unknown change {other:?}; nothing was changed."),
            ));
        }
    };
    Ok(see_other(PAGE, &done))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    user: String,
    password: String,
}

/// `POST /-/ui/password-reset`: a new password for someone who lost theirs.
pub async fn reset_password(State(app): State<Arc<App>>, viewer: Viewer, LimitedBody(body): LimitedBody) -> UiResult {
    require_admin(&viewer, "Resetting passwords")?;
    let request: PasswordForm = form(&body)?;
    let user = app.services.user(request.user.trim()).await?;
    app.services
        .set_password(&viewer.actor(), &user, request.password)
        .await?;
    Ok(see_other(
        PAGE,
        &format!("{}'s password was reset; the old one no longer works.", user.name),
    ))
}

#[derive(Deserialize)]
pub struct GrantForm {
    user: String,
    registry: String,
    /// read | publish | admin | none
    role: String,
}

/// `POST /-/ui/grants`: a role in a registry, or none.
pub async fn grant(State(app): State<Arc<App>>, viewer: Viewer, LimitedBody(body): LimitedBody) -> UiResult {
    require_admin(&viewer, "Granting roles")?;
    let request: GrantForm = form(&body)?;
    let role =
        Role::parse_or_none(&request.role).map_err(|e| UiError::Refused(StatusCode::BAD_REQUEST, e.to_string()))?;
    let user = app.services.user(request.user.trim()).await?;
    let registry_name = RegistryName::parse(&request.registry)
        .map_err(|e| UiError::Refused(StatusCode::BAD_REQUEST, format!("Registry: {e}")))?;
    let registry = app.services.registry(&registry_name).await?;
    app.services
        .set_member_role(&viewer.actor(), &registry, &user, role)
        .await?;
    let shown = role.map_or("no role", Role::as_str);
    Ok(see_other(
        PAGE,
        &format!("{} now has {shown} in {}.", user.name, registry.name),
    ))
}
