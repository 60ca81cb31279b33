//! The `Authorization` header npm clients send: `Bearer <token>` (`_authToken`) or
//! `Basic base64(user:password)` (`_auth`, `username` + `_password`; the password may
//! be a token). Only its shape is read here; what the credentials are worth is the
//! server's to decide.

use base64::Engine as _;

/// The largest header looked at; anything bigger is malformed.
pub const MAX_HEADER_LEN: usize = 4096;

/// What an `Authorization` header carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// `Bearer <token>`: the token, trimmed and not empty.
    Bearer(&'a str),
    /// `Basic <base64 user:password>`: split at the first `:`.
    Basic { user: String, password: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationError {
    #[error("the Authorization header is malformed")]
    Malformed,
    #[error("unsupported authorization scheme")]
    UnknownScheme,
}

/// Reads an `Authorization` header's value. The scheme is case-insensitive.
pub fn parse(header: &str) -> Result<Credentials<'_>, AuthorizationError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(AuthorizationError::Malformed);
    }
    let (scheme, value) = header.trim().split_once(' ').ok_or(AuthorizationError::Malformed)?;
    let value = value.trim();
    if value.is_empty() {
        return Err(AuthorizationError::Malformed);
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credentials::Bearer(value));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthorizationError::UnknownScheme);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| AuthorizationError::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| AuthorizationError::Malformed)?;
    let (user, password) = decoded.split_once(':').ok_or(AuthorizationError::Malformed)?;
    Ok(Credentials::Basic {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    }

    #[test]
    fn reads_bearer_tokens() {
        assert_eq!(parse("Bearer gth_abc"), Ok(Credentials::Bearer("gth_abc")));
        assert_eq!(parse("  bearer   gth_abc  "), Ok(Credentials::Bearer("gth_abc")));
        assert_eq!(parse("BEARER x"), Ok(Credentials::Bearer("x")));
    }

    #[test]
    fn reads_basic_credentials_split_at_the_first_colon() {
        assert_eq!(
            parse(&basic("alice", "pa:ss")),
            Ok(Credentials::Basic {
                user: "alice".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(
            parse(&basic("", "")),
            Ok(Credentials::Basic {
                user: String::new(),
                password: String::new()
            })
        );
    }

    #[test]
    fn refuses_malformed_headers() {
        for header in [
            "",
            "Bearer",
            "Bearer    ",
            "Basic !!!",
            "Basic YWxpY2U=", // "alice": no colon
            "Basic /w==",     // not UTF-8
        ] {
            assert_eq!(parse(header), Err(AuthorizationError::Malformed), "{header:?}");
        }
        let long = format!("Bearer {}", "a".repeat(MAX_HEADER_LEN));
        assert_eq!(parse(&long), Err(AuthorizationError::Malformed));
    }

    #[test]
    fn refuses_other_schemes() {
        assert_eq!(parse("Digest abc"), Err(AuthorizationError::UnknownScheme));
        assert_eq!(parse("Bearerx abc"), Err(AuthorizationError::UnknownScheme));
    }
}
