//! Web app sign-ins: a random id in an `HttpOnly` cookie, its SHA-256 in the store,
//! so every server process (and a restart) sees the same sessions, and a copy of the
//! database signs nobody in.

use std::net::IpAddr;
use std::time::Duration;

use rand::Rng as _;
use rand::distributions::Alphanumeric;

use gatehouse_store::{Meta, NewWebSession, StoreResult, User, WebSession, now_millis};

use super::token::hash_secret;

/// The cookie's name. Only `/-/ui/` and cookie-authenticated `/-/api/` calls read it;
/// the npm routes never do.
pub const COOKIE: &str = "gatehouse_session";

pub struct Sessions {
    meta: Meta,
    ttl: Duration,
}

impl Sessions {
    pub fn new(meta: Meta, ttl: Duration) -> Self {
        Sessions { meta, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs `user` in; returns the cookie value (shown to nobody but the browser).
    pub async fn start(&self, user: &User, client: IpAddr, user_agent: Option<&str>) -> StoreResult<String> {
        // 43 base62 characters: more than 256 bits.
        let id: String = rand::rngs::OsRng
            .sample_iter(&Alphanumeric)
            .take(43)
            .map(char::from)
            .collect();
        let client = client.to_string();
        let user_agent: Option<String> = user_agent.map(|ua| ua.chars().take(256).collect());
        self.meta
            .create_session(&NewWebSession {
                id_hash: &hash_secret(&id),
                user: user.id,
                expires_at: now_millis() + self.ttl.as_millis() as i64,
                client_addr: Some(&client),
                user_agent: user_agent.as_deref(),
            })
            .await?;
        Ok(id)
    }

    /// The live session behind a cookie value; a disabled user has none.
    pub async fn find(&self, id: &str) -> StoreResult<Option<WebSession>> {
        if id.len() != 43 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        let session = self.meta.session(&hash_secret(id), now_millis()).await?;
        Ok(session.filter(|s| !s.user.disabled))
    }

    pub async fn end(&self, id: &str) -> StoreResult<()> {
        self.meta.end_session(&hash_secret(id)).await.map(|_| ())
    }

    /// Sign out everywhere.
    pub async fn end_all(&self, user: &User) -> StoreResult<u64> {
        self.meta.end_sessions_of(user.id).await
    }
}
