//! Typed handoffs: a value one request leaves for a later one (which another replica
//! may answer), kept as JSON in the store (`SessionStore::put_handoff`) under the
//! SHA-256 of a random id only the client holds. npm's browser login and the page
//! that shows a new token once are built on them.

use serde::Serialize;
use serde::de::DeserializeOwned;

use gatehouse_store::{Meta, Millis, StoreError, StoreResult, now_millis};

use super::token::hash_secret;

/// The store key of a `kind` of handoff with the client's `id`: only the id's hash.
pub fn key(kind: &str, id: &str) -> String {
    format!("{kind}:{}", hash_secret(id))
}

/// Keeps `value` under `key` until `expires_at`, replacing what was there.
pub async fn put<T: Serialize>(meta: &Meta, key: &str, value: &T, expires_at: Millis) -> StoreResult<()> {
    let json = serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    meta.put_handoff(key, &json, expires_at).await
}

/// The value under `key`, unless it has expired.
pub async fn get<T: DeserializeOwned>(meta: &Meta, key: &str) -> StoreResult<Option<T>> {
    decode(meta.handoff(key, now_millis()).await?)
}

/// Removes and returns the value under `key`, unless it has expired: of several
/// takers at once, exactly one gets it.
pub async fn take<T: DeserializeOwned>(meta: &Meta, key: &str) -> StoreResult<Option<T>> {
    decode(meta.take_handoff(key, now_millis()).await?)
}

fn decode<T: DeserializeOwned>(json: Option<String>) -> StoreResult<Option<T>> {
    json.map(|json| serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("a stored handoff: {e}"))))
        .transpose()
}
