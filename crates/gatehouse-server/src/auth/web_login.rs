//! Browser ("web") login sessions: `npm login` asks for a session, prints the web
//! app's approval URL, and polls until a signed-in person approves there. The page and
//! the poll use different random ids, so knowing the poll URL does not let anyone
//! approve. Sessions are store handoffs (ten minutes), so the poll may reach another
//! replica than the page; the token is minted by the poll that collects the approval,
//! so no secret is ever stored.

use std::time::Duration;

use rand::Rng;
use rand::distributions::Alphanumeric;
use serde::{Deserialize, Serialize};

use gatehouse_store::registry::RegistryName;
use gatehouse_store::{Meta, StoreError, StoreResult, now_millis};

use super::handoff;

pub const SESSION_TTL: Duration = Duration::from_secs(600);
/// What the tokens page calls the token a web login mints.
pub const TOKEN_NAME: &str = "npm login (web)";

/// 32 random letters and digits (190 bits), from the operating system.
pub fn random_id() -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// A login waiting for its approval, as the page sees it.
pub struct Pending {
    pub registry: RegistryName,
}

/// What the terminal's poll finds.
pub enum Poll {
    Pending,
    /// Approved by `user` for `registry`: this poll (and no other) mints the token.
    Approved {
        user: String,
        registry: RegistryName,
    },
    Unknown,
}

/// The handoffs behind a login: one under the page's id, one under the poll's.
#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Handoff {
    /// Under the page's id: which registry, and the poll's key to approve.
    Page {
        registry: String,
        done: String,
    },
    /// Under the poll's id, until the page is approved.
    Waiting,
    Approved {
        user: String,
        registry: String,
    },
}

/// The store keys of a login's page and of its poll.
fn page_key(login_id: &str) -> String {
    handoff::key("npm-login-page", login_id)
}

fn done_key(done_id: &str) -> String {
    handoff::key("npm-login-done", done_id)
}

pub struct WebLogins {
    meta: Meta,
}

impl WebLogins {
    pub fn new(meta: Meta) -> Self {
        WebLogins { meta }
    }

    /// Opens a session; returns `(login_id, done_id)`.
    pub async fn start(&self, registry: &RegistryName) -> StoreResult<(String, String)> {
        let (login_id, done_id) = (random_id(), random_id());
        let expires_at = expiry();
        handoff::put(&self.meta, &done_key(&done_id), &Handoff::Waiting, expires_at).await?;
        let page = Handoff::Page {
            registry: registry.to_string(),
            done: done_key(&done_id),
        };
        handoff::put(&self.meta, &page_key(&login_id), &page, expires_at).await?;
        Ok((login_id, done_id))
    }

    /// The login behind a page, while it is still waiting for approval.
    pub async fn pending(&self, login_id: &str) -> StoreResult<Option<Pending>> {
        Ok(match handoff::get(&self.meta, &page_key(login_id)).await? {
            Some(Handoff::Page { registry, .. }) => Some(Pending {
                registry: parse_registry(&registry)?,
            }),
            _ => None,
        })
    }

    /// Approves the login behind a page for `user`: the page can't be used again,
    /// and the terminal's next poll collects a token. `None` when it was approved
    /// meanwhile (or expired).
    pub async fn approve(&self, login_id: &str, user: &str) -> StoreResult<Option<Pending>> {
        let Some(Handoff::Page { registry, done }) = handoff::take(&self.meta, &page_key(login_id)).await? else {
            return Ok(None);
        };
        let approved = Handoff::Approved {
            user: user.to_owned(),
            registry: registry.clone(),
        };
        handoff::put(&self.meta, &done, &approved, expiry()).await?;
        Ok(Some(Pending {
            registry: parse_registry(&registry)?,
        }))
    }

    /// What the CLI gets when it polls. An approval is collected once.
    pub async fn poll(&self, done_id: &str) -> StoreResult<Poll> {
        let key = done_key(done_id);
        match handoff::get(&self.meta, &key).await? {
            None | Some(Handoff::Page { .. }) => Ok(Poll::Unknown),
            Some(Handoff::Waiting) => Ok(Poll::Pending),
            // Read, then taken: of two polls at once, one collects it.
            Some(Handoff::Approved { .. }) => match handoff::take(&self.meta, &key).await? {
                Some(Handoff::Approved { user, registry }) => Ok(Poll::Approved {
                    user,
                    registry: parse_registry(&registry)?,
                }),
                _ => Ok(Poll::Unknown),
            },
        }
    }
}

fn expiry() -> i64 {
    now_millis() + i64::try_from(SESSION_TTL.as_millis()).unwrap_or(i64::MAX)
}

fn parse_registry(name: &str) -> StoreResult<RegistryName> {
    RegistryName::parse(name).map_err(|e| StoreError::Corrupt(format!("npm login handoff: {e}")))
}
