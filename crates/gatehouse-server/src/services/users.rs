//! Users and their tokens.

use gatehouse_store::{AuditAction, Conflict, StoreError, User, UserId, now_millis};

use super::{Actor, Audited, ServiceError, ServiceResult, Services};
use crate::auth::token::{self, MintedToken, TokenSpec};
use crate::auth::{password, valid_user_name};

/// A user to create.
pub struct NewUser<'a> {
    pub name: &'a str,
    pub email: Option<&'a str>,
    pub password: String,
    pub admin: bool,
}

/// How a user came to be, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation {
    /// By an administrator (CLI, first start).
    ByAdministrator,
    /// By themselves (`npm adduser` where registration is allowed).
    Registration,
}

/// Which token to revoke.
#[derive(Debug, Clone, Copy)]
pub enum TokenRef<'a> {
    /// Its public key (`npm token list`, `gatehouse token list`).
    Key(&'a str),
    /// Its value (`npm logout` sends the token itself).
    Secret(&'a str),
}

impl Services {
    pub async fn user(&self, name: &str) -> ServiceResult<User> {
        self.meta
            .user(name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no user named {name:?}")))
    }

    /// Creates a user with a hashed password.
    pub async fn create_user(&self, actor: &Actor, new: NewUser<'_>, how: Creation) -> ServiceResult<User> {
        if !valid_user_name(new.name) {
            return Err(ServiceError::Invalid(format!(
                "invalid user name {:?}: use 1-64 characters of a-z, 0-9, '.', '-' and '_'",
                new.name
            )));
        }
        let hash = password::hash(new.password).await?;
        let user = match self.meta.create_user(new.name, new.email, &hash, new.admin).await {
            Ok(user) => user,
            Err(StoreError::Conflict(Conflict::UserExists)) => {
                return Err(ServiceError::Conflict(format!(
                    "a user named {:?} already exists",
                    new.name
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let action = match how {
            Creation::ByAdministrator => AuditAction::UserCreate,
            Creation::Registration => AuditAction::UserRegister,
        };
        let entry = Audited::new(action).detail(format!("{} admin={}", user.name, user.is_admin));
        self.record(actor, entry).await;
        Ok(user)
    }

    /// Creates a user moved in from another registry, keeping the password hash it had
    /// there (a form [`password::HashKind`] knows; a weak one is replaced at the first
    /// login). `None` when a user of that name exists already: a re-run skips it.
    pub async fn import_user(&self, actor: &Actor, name: &str, hash: &str, from: &str) -> ServiceResult<Option<User>> {
        if !valid_user_name(name) {
            return Err(ServiceError::Invalid(
                "user names here are 1-64 characters of a-z, 0-9, '.', '-' and '_'; create this user under such a name \
                 (gatehouse user add) and ask them to set a password"
                    .into(),
            ));
        }
        let user = match self.meta.create_user(name, None, hash, false).await {
            Ok(user) => user,
            Err(StoreError::Conflict(Conflict::UserExists)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let form = password::HashKind::of(hash).map_or("unknown".to_owned(), |k| format!("{k:?}").to_lowercase());
        let entry =
            Audited::new(AuditAction::UserCreate).detail(format!("{} imported from {from} hash={form}", user.name));
        self.record(actor, entry).await;
        Ok(Some(user))
    }

    /// Sets a new password for `user`. Logins with the old one fail from now on, also
    /// where it was remembered (the check compares against the stored hash).
    pub async fn set_password(&self, actor: &Actor, user: &User, password: String) -> ServiceResult<()> {
        let hash = password::hash(password).await?;
        self.meta.set_password_hash(user.id, &hash).await?;
        let entry = Audited::new(AuditAction::UserPassword).detail(user.name.clone());
        self.record(actor, entry).await;
        Ok(())
    }

    /// Disables (or enables) a user: a disabled user can't log in, and their tokens
    /// are refused at once here and within a second elsewhere.
    pub async fn set_user_disabled(&self, actor: &Actor, user: &User, disabled: bool) -> ServiceResult<()> {
        self.meta.set_user_disabled(user.id, disabled).await?;
        self.caches.credentials_changed();
        let action = if disabled {
            AuditAction::UserDisable
        } else {
            AuditAction::UserEnable
        };
        self.record(actor, Audited::new(action).detail(user.name.clone())).await;
        Ok(())
    }

    /// Makes a user an administrator of everything, or not. The last administrator stays.
    pub async fn set_user_admin(&self, actor: &Actor, user: &User, admin: bool) -> ServiceResult<()> {
        if !admin && user.is_admin && self.is_last_admin(user).await? {
            return Err(ServiceError::Conflict(format!(
                "{} is the only administrator; make someone else one first",
                user.name
            )));
        }
        self.meta.set_user_admin(user.id, admin).await?;
        self.caches.credentials_changed();
        self.caches.registry_changed();
        let entry = Audited::new(AuditAction::UserAdmin).detail(format!("{} admin={admin}", user.name));
        self.record(actor, entry).await;
        Ok(())
    }

    /// Deletes a user, their tokens, grants and maintainerships. The last administrator stays.
    pub async fn delete_user(&self, actor: &Actor, user: &User) -> ServiceResult<()> {
        if user.is_admin && self.is_last_admin(user).await? {
            return Err(ServiceError::Conflict(format!(
                "{} is the only administrator; make someone else one first",
                user.name
            )));
        }
        self.meta.delete_user(user.id).await?;
        self.caches.credentials_changed();
        self.caches.registry_changed();
        self.record(actor, Audited::new(AuditAction::UserDelete).detail(user.name.clone()))
            .await;
        Ok(())
    }

    /// Clears the failed-login count of `name` (kept in the store, for every
    /// process), so they may try again.
    pub async fn unlock_user(&self, actor: &Actor, user: &User) -> ServiceResult<()> {
        self.meta.clear_login_failures(&user.name).await?;
        self.record(actor, Audited::new(AuditAction::UserUnlock).detail(user.name.clone()))
            .await;
        Ok(())
    }

    async fn is_last_admin(&self, user: &User) -> ServiceResult<bool> {
        let admins = self
            .meta
            .users()
            .await?
            .into_iter()
            .filter(|u| u.is_admin && !u.disabled);
        Ok(admins.filter(|u| u.id != user.id).count() == 0)
    }

    /// Mints a token for `user`; its secret is in the answer and nowhere else.
    pub async fn issue_token(&self, actor: &Actor, user: &User, spec: TokenSpec) -> ServiceResult<MintedToken> {
        let summary = format!(
            "user={} readonly={} registries={:?} packages={:?} cidr={:?}",
            user.name, spec.readonly, spec.registries, spec.packages, spec.cidr_whitelist
        );
        let minted = token::issue(&self.meta, user.id, spec).await?;
        let entry = Audited::new(AuditAction::TokenCreate).detail(format!("key={} {summary}", minted.key));
        self.record(actor, entry).await;
        Ok(minted)
    }

    /// Revokes a token by its public key or its secret's hash; with `owner`, only that
    /// user's. It stops working at once here, and within a second elsewhere.
    pub async fn revoke_token(
        &self,
        actor: &Actor,
        owner: Option<UserId>,
        token: TokenRef<'_>,
        why: &str,
    ) -> ServiceResult<()> {
        let (key_or_hash, shown) = match token {
            TokenRef::Key(key) => (key.to_owned(), format!("key={key}")),
            TokenRef::Secret(secret) => (token::hash_secret(secret), "by value".to_owned()),
        };
        if !self.meta.revoke_token(owner, &key_or_hash, now_millis()).await? {
            return Err(ServiceError::NotFound(match token {
                TokenRef::Key(key) => format!("no live token with key \"{key}\""),
                TokenRef::Secret(_) => "no such token".into(),
            }));
        }
        self.caches.credentials_changed();
        let entry = Audited::new(AuditAction::TokenRevoke).detail(format!("{shown} {why}"));
        self.record(actor, entry).await;
        Ok(())
    }
}
