//! Password hashing with argon2id. Hashing is deliberately slow, so it runs on the
//! blocking pool, never on the async runtime.
//!
//! Users moved in from Verdaccio keep the hashes its htpasswd file held: bcrypt stays
//! as it is (it is strong), and the weaker forms Verdaccio also accepts (`{SHA}`,
//! `{PLAIN}`, Apache's `$apr1$`, MD5-crypt and DES crypt) are verified once and then
//! replaced with argon2id ([`Verified::Rehash`]).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use base64::Engine as _;
use md5::{Digest as _, Md5};
use sha1::Sha1;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

pub const MIN_PASSWORD_LEN: usize = 8;

/// The forms a stored password hash takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    Argon2,
    Bcrypt,
    /// htpasswd's `{SHA}`: base64 of an unsalted SHA-1.
    Sha1,
    /// htpasswd's `{PLAIN}`: the password itself.
    Plain,
    /// Apache's MD5 variant, `$apr1$`.
    Apr1,
    /// MD5-crypt, `$1$`.
    Md5Crypt,
    /// Traditional DES crypt(3): 13 characters, a 2-character salt first.
    DesCrypt,
}

impl HashKind {
    /// What `stored` is, or `None` for a form no login can verify.
    pub fn of(stored: &str) -> Option<HashKind> {
        const CRYPT64: &str = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        if stored.starts_with("$argon2") {
            Some(HashKind::Argon2)
        } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| stored.starts_with(p)) {
            Some(HashKind::Bcrypt)
        } else if stored.starts_with("{SHA}") {
            Some(HashKind::Sha1)
        } else if stored.starts_with("{PLAIN}") {
            Some(HashKind::Plain)
        } else if stored.starts_with("$apr1$") {
            Some(HashKind::Apr1)
        } else if stored.starts_with("$1$") {
            Some(HashKind::Md5Crypt)
        } else if stored.len() == 13 && stored.chars().all(|c| CRYPT64.contains(c)) {
            Some(HashKind::DesCrypt)
        } else {
            None
        }
    }

    /// Whether a successful login replaces it with argon2id.
    pub fn is_weak(self) -> bool {
        !matches!(self, HashKind::Argon2 | HashKind::Bcrypt)
    }
}

/// What checking a password against a stored hash found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Right, and the stored hash is a weak form: store [`rehash`] of it now.
    Rehash,
}

impl Verified {
    pub fn matches(self) -> bool {
        self != Verified::No
    }
}

pub async fn hash(password: String) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort);
    }
    rehash(password).await
}

/// Hashes a password that was already accepted (a legacy hash verified it), whatever
/// its length: the length rule is for choosing passwords, not for logging in.
pub async fn rehash(password: String) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| PasswordError::Hash(e.to_string()))?
}

/// Whether `password` matches the stored hash, in any form [`HashKind`] knows. A
/// malformed or unknown stored hash verifies as no rather than failing the request.
pub async fn verify(password: String, stored: String) -> Verified {
    tokio::task::spawn_blocking(move || verify_now(&password, &stored))
        .await
        .unwrap_or(Verified::No)
}

fn verify_now(password: &str, stored: &str) -> Verified {
    let Some(kind) = HashKind::of(stored) else {
        return Verified::No;
    };
    let matches = match kind {
        HashKind::Argon2 => PasswordHash::new(stored)
            .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false),
        HashKind::Bcrypt | HashKind::Md5Crypt | HashKind::DesCrypt => pwhash::unix::verify(password, stored),
        HashKind::Sha1 => {
            let digest = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(password.as_bytes()));
            same(&stored["{SHA}".len()..], &digest)
        }
        HashKind::Plain => same(&stored["{PLAIN}".len()..], password),
        HashKind::Apr1 => {
            let salt = stored["$apr1$".len()..].split('$').next().unwrap_or_default();
            same(stored, &apr1(password.as_bytes(), salt))
        }
    };
    match (matches, kind.is_weak()) {
        (false, _) => Verified::No,
        (true, false) => Verified::Yes,
        (true, true) => Verified::Rehash,
    }
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Apache's `$apr1$` hash: MD5-crypt with its own magic string (no crate keeps it).
fn apr1(password: &[u8], salt: &str) -> String {
    const MAGIC: &[u8] = b"$apr1$";
    const CRYPT64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let salt = &salt.as_bytes()[..salt.len().min(8)];
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut context = Md5::new().chain_update(password).chain_update(MAGIC).chain_update(salt);
    for chunk in password.chunks(16) {
        context.update(&alternate[..chunk.len()]);
    }
    let mut bits = password.len();
    while bits > 0 {
        context.update([if bits & 1 == 1 {
            0
        } else {
            password.first().copied().unwrap_or(0)
        }]);
        bits >>= 1;
    }
    let mut digest = context.finalize();
    for round in 0..1000 {
        let mut next = Md5::new();
        if round % 2 == 1 {
            next.update(password);
        } else {
            next.update(digest);
        }
        if round % 3 != 0 {
            next.update(salt);
        }
        if round % 7 != 0 {
            next.update(password);
        }
        if round % 2 == 1 {
            next.update(digest);
        } else {
            next.update(password);
        }
        digest = next.finalize();
    }
    let mut out = format!("$apr1${}$", String::from_utf8_lossy(salt));
    let groups = [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)];
    let mut push = |mut value: u32, chars: usize| {
        for _ in 0..chars {
            out.push(char::from(CRYPT64[(value & 0x3f) as usize]));
            value >>= 6;
        }
    };
    for (a, b, c) in groups {
        push(
            (u32::from(digest[a]) << 16) | (u32::from(digest[b]) << 8) | u32::from(digest[c]),
            4,
        );
    }
    push(u32::from(digest[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_short_passwords_are_refused() {
        let stored = hash("correct horse".into()).await.expect("hash");
        assert!(stored.starts_with("$argon2id$"));
        assert_eq!(verify("correct horse".into(), stored.clone()).await, Verified::Yes);
        assert_eq!(verify("wrong horse!".into(), stored).await, Verified::No);
        assert_eq!(verify("x".into(), "not a hash".into()).await, Verified::No);
        assert!(matches!(hash("short".into()).await, Err(PasswordError::TooShort)));
        assert!(rehash("short".into()).await.is_ok());
    }

    /// Hashes made by other tools (OpenSSL, Python's crypt, Verdaccio's bcryptjs).
    #[test]
    fn htpasswd_forms_verify_and_the_weak_ones_ask_for_a_rehash() {
        let cases = [
            ("$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00", "password", Verified::Rehash),
            ("$apr1$Q3x9$4flnJQfe3uNW.z9kevnXv1", "correct horse", Verified::Rehash),
            ("$1$abcdefgh$y6iHhJNbuC0xpbk0w9pm80", "correct horse", Verified::Rehash),
            ("abhv/ZnAzL36k", "secret12", Verified::Rehash),
            ("{SHA}L55TUjtiq8FBorTWAZ0jy6g129A=", "correct horse", Verified::Rehash),
            ("{PLAIN}correct horse", "correct horse", Verified::Rehash),
            (
                "$2a$10$XkWQKy2WF.Yjn5BX9ijCN.fV4Cs53bXscswq46e/QgkkiwnMw2EXC",
                "alice-secret-1",
                Verified::Yes,
            ),
        ];
        for (stored, password, expected) in cases {
            assert_eq!(verify_now(password, stored), expected, "{stored}");
            assert_eq!(verify_now("not it at all", stored), Verified::No, "{stored}");
        }
        assert_eq!(HashKind::of("$6$rounds=5000$salt$hash"), None);
        assert_eq!(verify_now("", "{PLAIN}"), Verified::Rehash);
        assert_eq!(verify_now("anything", "$apr1$"), Verified::No);
    }
}
