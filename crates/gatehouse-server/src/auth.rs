//! Who is calling: `Authorization: Bearer <token>` or `Basic base64(user:password)`
//! (the password may also be a token, as npm's `_auth` and Unity's `_auth` allow).

pub mod cidr;
pub mod handoff;
pub mod password;
pub mod session;
pub mod token;
pub mod web_login;

use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::OnceCell;

use moka::future::Cache;
use sha2::{Digest, Sha256};

use gatehouse_npm::authorization::{self, AuthorizationError, Credentials};
use gatehouse_npm::name::glob_matches;
use gatehouse_npm::trust::PublishedBy;
use gatehouse_store::{Meta, StoreError, Token, User, now_millis};
use password::Verified;

use crate::store_cache::StoreCache;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    /// `Some` when the caller used a token (its limits apply), `None` for a password.
    pub token: Option<TokenGrant>,
}

#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub key: String,
    pub readonly: bool,
    /// Registries the token is limited to; empty: all.
    pub registries: Vec<String>,
    /// Package patterns the token is limited to; empty: all.
    pub packages: Vec<String>,
    /// Exchanged by trusted publishing: the CI run it was exchanged for. Such a token
    /// publishes new versions of its one package and does nothing else.
    pub published_by: Option<PublishedBy>,
}

impl Principal {
    /// The CI run a trusted-publishing token was exchanged for.
    pub fn published_by(&self) -> Option<&PublishedBy> {
        self.token.as_ref().and_then(|t| t.published_by.as_ref())
    }

    pub fn is_readonly(&self) -> bool {
        self.token.as_ref().is_some_and(|t| t.readonly)
    }

    /// False when the token is limited to other registries.
    pub fn may_use_registry(&self, registry: &str) -> bool {
        self.token
            .as_ref()
            .is_none_or(|t| t.registries.is_empty() || t.registries.iter().any(|r| r == registry))
    }

    /// False when the token is limited to other packages.
    pub fn may_use_package(&self, name: &str) -> bool {
        self.token
            .as_ref()
            .is_none_or(|t| t.packages.is_empty() || t.packages.iter().any(|p| glob_matches(p, name)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the Authorization header is malformed; use \"Bearer <token>\" or \"Basic <base64 user:password>\"")]
    Malformed,
    #[error("unsupported authorization scheme; use a Bearer token or Basic credentials")]
    UnknownScheme,
    #[error(
        "this is not a Gatehouse token (they start with gth_); log in again (npm login) or configure a token made here"
    )]
    NotAToken,
    #[error("this token is not known to this server; log in again (npm login) or create a new token")]
    UnknownToken,
    #[error("this token was revoked; log in again (npm login) or create a new token")]
    RevokedToken,
    #[error("this token expired at {0}; log in again (npm login) or create a new token")]
    ExpiredToken(String),
    #[error("this token belongs to another user than \"{0}\"; send it with its owner's name, or an email address")]
    TokenOfAnotherUser(String),
    #[error("incorrect username or password")]
    BadPassword,
    #[error("too many failed logins; wait 15 minutes and try again")]
    RateLimited,
    #[error("the account \"{0}\" is disabled; ask an administrator")]
    UserDisabled(String),
    #[error("this token may not be used from {0}; it is limited to other addresses")]
    AddressRefused(IpAddr),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How long a verified password is remembered, so Basic auth doesn't pay argon2
/// on every request of an install.
const PASSWORD_CACHE_TTL: Duration = Duration::from_secs(300);
/// A cached token is looked up again after this long, whatever happens.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(300);
/// `last_used_at` is refreshed at most this often per token.
const TOUCH_INTERVAL_MS: i64 = 60_000;

/// Failed password checks allowed per user name, and per client address, within
/// `FAILURE_WINDOW`, before further attempts are refused outright.
pub const MAX_FAILURES_PER_USER: u32 = 10;
pub const MAX_FAILURES_PER_ADDRESS: u32 = 50;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(900);

/// The verified-password cache's key for a `name` and `password` pair.
fn verified_key(name: &str, password: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([0])
        .chain_update(password.as_bytes())
        .finalize()
        .into()
}

pub struct Authenticator {
    meta: Meta,
    verified_passwords: Cache<[u8; 32], String>,
    /// Hash checked when a user doesn't exist, so both answers take as long.
    dummy_hash: OnceCell<String>,
    /// Tokens by secret hash, so requests don't each query the store. Dropped on
    /// revocation (here at once; from other processes through the change log).
    tokens: StoreCache<String, Token>,
}

impl Authenticator {
    pub fn new(meta: Meta) -> Self {
        Authenticator {
            meta,
            verified_passwords: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(PASSWORD_CACHE_TTL)
                .build(),
            dummy_hash: OnceCell::new(),
            tokens: StoreCache::new(
                Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(TOKEN_CACHE_TTL)
                    .build(),
            ),
        }
    }

    /// Forgets cached tokens (and the users they carry): call after revoking any, or
    /// after a user changed.
    pub fn forget_tokens(&self) {
        self.tokens.invalidate_all();
    }

    /// `Ok(None)` when no credentials were sent.
    pub async fn authenticate(&self, header: Option<&str>, client: IpAddr) -> Result<Option<Principal>, AuthError> {
        let Some(header) = header else {
            return Ok(None);
        };
        match authorization::parse(header) {
            Ok(Credentials::Bearer(token)) => self.by_token(token, None, client).await.map(Some),
            Ok(Credentials::Basic { user, password }) if token::looks_like_token(&password) => {
                self.by_token(&password, Some(&user), client).await.map(Some)
            }
            Ok(Credentials::Basic { user, password }) => self.by_password(&user, &password, client).await.map(Some),
            Err(AuthorizationError::Malformed) => Err(AuthError::Malformed),
            Err(AuthorizationError::UnknownScheme) => Err(AuthError::UnknownScheme),
        }
    }

    /// Checks a token. With `expected_user` (Basic `user:token`), the token decides who
    /// calls: the user part must name its owner, unless it is an email address (Unity
    /// documents `email:token`), which is not checked.
    pub async fn by_token(
        &self,
        secret: &str,
        expected_user: Option<&str>,
        client: IpAddr,
    ) -> Result<Principal, AuthError> {
        if !token::looks_like_token(secret) {
            return Err(AuthError::NotAToken);
        }
        // Looked up by hash: the comparison happens on a digest, so timing reveals nothing of the secret.
        let hash = token::hash_secret(secret);
        let read = self.tokens.mark();
        let token = match self.tokens.get(&hash).await {
            Some(token) => token,
            None => {
                let token = self
                    .meta
                    .token_by_secret_hash(&hash)
                    .await?
                    .ok_or(AuthError::UnknownToken)?;
                self.tokens.insert(read, hash.clone(), token.clone()).await;
                token
            }
        };
        let now = now_millis();
        if token.revoked_at.is_some() {
            return Err(AuthError::RevokedToken);
        }
        if token.user.disabled {
            return Err(AuthError::UserDisabled(token.user.name));
        }
        if let Some(at) = token.expires_at.filter(|at| *at <= now) {
            return Err(AuthError::ExpiredToken(gatehouse_npm::packument::iso_time(at)));
        }
        if let Some(user) = expected_user.filter(|u| *u != token.user.name && !u.contains('@')) {
            return Err(AuthError::TokenOfAnotherUser(user.to_owned()));
        }
        if !token.cidr_whitelist.is_empty()
            && !token
                .cidr_whitelist
                .iter()
                .filter_map(|c| cidr::Cidr::parse(c).ok())
                .any(|c| c.contains(client))
        {
            return Err(AuthError::AddressRefused(client));
        }
        if token.last_used_at.is_none_or(|at| now - at > TOUCH_INTERVAL_MS) {
            self.meta.touch_token(&hash, now).await?;
            let mut touched = token.clone();
            touched.last_used_at = Some(now);
            self.tokens.insert(read, hash, touched).await;
        }
        let published_by = match &token.published_by {
            Some(json) => Some(serde_json::from_str(json).map_err(|e| {
                tracing::error!(token = %token.key, error = %e, "unreadable trusted-publishing token");
                AuthError::UnknownToken
            })?),
            None => None,
        };
        Ok(Principal {
            token: Some(TokenGrant {
                key: token.key,
                readonly: token.readonly,
                registries: token.registries,
                packages: token.packages,
                published_by,
            }),
            user: token.user,
        })
    }

    /// Checks a user name and password (login, Basic auth). Failures count against
    /// both the user name and the client address; past the limit, `RateLimited`.
    pub async fn by_password(&self, name: &str, password: &str, client: IpAddr) -> Result<Principal, AuthError> {
        let user_key = format!("user:{name}");
        let addr_key = format!("addr:{client}");
        // A pair verified moments ago passes without the store's counts: only someone
        // who knew the password gets here, and an install with Basic auth then costs
        // no store reads per request. The counts live in the store, for every replica.
        let recently_verified = self.verified_passwords.contains_key(&verified_key(name, password));
        let now = now_millis();
        let user_failures = if recently_verified {
            0
        } else {
            let user_failures = self.meta.login_failures(&user_key, now).await?;
            if user_failures >= MAX_FAILURES_PER_USER
                || self.meta.login_failures(&addr_key, now).await? >= MAX_FAILURES_PER_ADDRESS
            {
                tracing::warn!(user = name, client = %client, "login refused: too many failures");
                return Err(AuthError::RateLimited);
            }
            user_failures
        };
        match self.check_password(name, password).await {
            Ok(principal) => {
                // Success resets the count against the name (not the address's).
                if user_failures > 0 {
                    self.meta.clear_login_failures(name).await?;
                }
                Ok(principal)
            }
            Err(AuthError::BadPassword) => {
                let window_ends = now + i64::try_from(FAILURE_WINDOW.as_millis()).unwrap_or(i64::MAX);
                for key in [user_key, addr_key] {
                    self.meta.count_login_failure(&key, now, window_ends).await?;
                }
                tracing::warn!(user = name, client = %client, "login failed");
                Err(AuthError::BadPassword)
            }
            Err(e) => Err(e),
        }
    }

    async fn check_password(&self, name: &str, password: &str) -> Result<Principal, AuthError> {
        let user = self.meta.user(name).await?;
        let cache_key = verified_key(name, password);
        let Some(user) = user else {
            // Spend the same time as a real check so the answer doesn't reveal which names exist.
            let dummy = self
                .dummy_hash
                .get_or_init(|| async { password::hash(token::mint().secret).await.unwrap_or_default() })
                .await;
            let _ = password::verify(password.to_owned(), dummy.clone()).await;
            return Err(AuthError::BadPassword);
        };
        let verified = match self.verified_passwords.get(&cache_key).await {
            Some(hash) if hash == user.password_hash => Verified::Yes,
            _ => password::verify(password.to_owned(), user.password_hash.clone()).await,
        };
        if !verified.matches() {
            return Err(AuthError::BadPassword);
        }
        // Said only to someone who knows the password.
        if user.disabled {
            return Err(AuthError::UserDisabled(user.name));
        }
        let mut user = user;
        if verified == Verified::Rehash {
            user.password_hash = self.replace_weak_hash(&user, password).await;
        }
        self.verified_passwords
            .insert(cache_key, user.password_hash.clone())
            .await;
        Ok(Principal { user, token: None })
    }

    /// A password an imported weak hash (`{SHA}`, `$apr1$`, crypt) just verified is
    /// stored as argon2id from now on. On failure the old hash stays and the login
    /// goes on; the next one tries again.
    async fn replace_weak_hash(&self, user: &User, password: &str) -> String {
        let stored = match password::rehash(password.to_owned()).await {
            Ok(hash) => self.meta.set_password_hash(user.id, &hash).await.map(|()| hash),
            Err(e) => {
                tracing::warn!(user = %user.name, error = %e, "cannot re-hash an imported password");
                return user.password_hash.clone();
            }
        };
        match stored {
            Ok(hash) => {
                tracing::info!(user = %user.name, "imported password re-hashed with argon2id");
                hash
            }
            Err(e) => {
                tracing::warn!(user = %user.name, error = %e, "cannot store a re-hashed password");
                user.password_hash.clone()
            }
        }
    }
}

/// User names: 1-64 characters of `a-z`, `0-9`, `.`, `-`, `_`, not starting with punctuation.
pub fn valid_user_name(name: &str) -> bool {
    name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
}
