//! Browser ("web") login sessions: `npm login` asks for a session, prints the web
//! app's approval URL, and polls until a signed-in person approves there. Sessions
//! live in memory for ten minutes; the page and the poll use different random ids,
//! so knowing the poll URL does not let anyone approve.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::future::Cache;
use rand::Rng;
use rand::distributions::Alphanumeric;

use gatehouse_store::registry::RegistryName;

pub const SESSION_TTL: Duration = Duration::from_secs(600);

pub struct Session {
    pub registry: RegistryName,
    pub done_id: String,
    token: Mutex<Option<String>>,
}

pub enum Poll {
    Pending,
    Done(String),
    Unknown,
}

pub struct WebLogins {
    by_login_id: Cache<String, Arc<Session>>,
    by_done_id: Cache<String, Arc<Session>>,
}

/// 32 random letters and digits (190 bits), from the operating system.
pub fn random_id() -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

impl Default for WebLogins {
    fn default() -> Self {
        let cache = || Cache::builder().max_capacity(10_000).time_to_live(SESSION_TTL).build();
        WebLogins {
            by_login_id: cache(),
            by_done_id: cache(),
        }
    }
}

impl WebLogins {
    /// Opens a session; returns `(login_id, done_id)`.
    pub async fn start(&self, registry: RegistryName) -> (String, String) {
        let login_id = random_id();
        let session = Arc::new(Session {
            registry,
            done_id: random_id(),
            token: Mutex::new(None),
        });
        let done_id = session.done_id.clone();
        self.by_login_id.insert(login_id.clone(), session.clone()).await;
        self.by_done_id.insert(done_id.clone(), session).await;
        (login_id, done_id)
    }

    /// The session behind a login page, while it is still waiting for a sign-in.
    pub async fn pending(&self, login_id: &str) -> Option<Arc<Session>> {
        self.by_login_id.get(login_id).await
    }

    /// Hands the token to the waiting CLI; the page can't be used again.
    pub async fn complete(&self, login_id: &str, session: &Session, token: String) {
        if let Ok(mut slot) = session.token.lock() {
            *slot = Some(token);
        }
        self.by_login_id.invalidate(login_id).await;
    }

    /// What the CLI gets when it polls. A token is handed out once.
    pub async fn poll(&self, done_id: &str) -> Poll {
        let Some(session) = self.by_done_id.get(done_id).await else {
            return Poll::Unknown;
        };
        let token = session.token.lock().ok().and_then(|mut slot| slot.take());
        match token {
            Some(token) => {
                self.by_done_id.invalidate(done_id).await;
                Poll::Done(token)
            }
            None => Poll::Pending,
        }
    }
}
