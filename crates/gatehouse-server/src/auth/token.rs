//! API tokens: `gth_` + 43 random base62 characters (~256 bits). The prefix lets
//! secret scanners recognise leaked tokens; only a SHA-256 of the value is stored.

use rand::Rng;

use gatehouse_store::{Meta, NewToken, StoreResult, UserId};
use rand::distributions::Alphanumeric;
use sha2::{Digest, Sha256};

pub const TOKEN_PREFIX: &str = "gth_";
const SECRET_LEN: usize = 43;

/// A freshly minted token. `secret` is shown to its owner once and never stored.
pub struct MintedToken {
    pub secret: String,
    pub secret_hash: String,
    /// Public identifier used by `npm token list/revoke`.
    pub key: String,
    /// Safe to show in lists: prefix and a few characters.
    pub display: String,
}

pub fn mint() -> MintedToken {
    let mut rng = rand::rngs::OsRng;
    let body: String = (&mut rng)
        .sample_iter(&Alphanumeric)
        .take(SECRET_LEN)
        .map(char::from)
        .collect();
    let secret = format!("{TOKEN_PREFIX}{body}");
    let key = hex::encode(rng.r#gen::<[u8; 16]>());
    MintedToken {
        secret_hash: hash_secret(&secret),
        display: format!("{}…", &secret[..TOKEN_PREFIX.len() + 6]),
        secret,
        key,
    }
}

/// What a new token may do.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TokenSpec {
    pub name: Option<String>,
    pub readonly: bool,
    pub cidr_whitelist: Vec<String>,
    pub registries: Vec<String>,
    pub packages: Vec<String>,
    pub expires_at: Option<i64>,
    /// Exchanged by trusted publishing: who published (`PublishedBy`, JSON).
    pub published_by: Option<String>,
}

/// Mints a token for `user` and stores its hash. The returned secret is shown once.
pub async fn issue(meta: &Meta, user: UserId, spec: TokenSpec) -> StoreResult<MintedToken> {
    let minted = mint();
    meta.insert_token(&NewToken {
        key: minted.key.clone(),
        secret_hash: minted.secret_hash.clone(),
        display: minted.display.clone(),
        user_id: user,
        name: spec.name,
        readonly: spec.readonly,
        cidr_whitelist: spec.cidr_whitelist,
        registries: spec.registries,
        packages: spec.packages,
        expires_at: spec.expires_at,
        published_by: spec.published_by,
    })
    .await?;
    Ok(minted)
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Cheap shape check before touching the database: right prefix, right length, base62.
pub fn looks_like_token(candidate: &str) -> bool {
    candidate
        .strip_prefix(TOKEN_PREFIX)
        .is_some_and(|body| body.len() == SECRET_LEN && body.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_are_unique_prefixed_and_hashed() {
        let a = mint();
        let b = mint();
        assert_ne!(a.secret, b.secret);
        assert!(looks_like_token(&a.secret));
        assert_eq!(a.secret_hash, hash_secret(&a.secret));
        assert!(!a.display.contains(&a.secret[12..]));
        assert!(!looks_like_token("gth_short"));
        assert!(!looks_like_token(&a.secret.replace("gth_", "ghp_")));
    }
}
