//! Registry names: the `{registry}` in `/r/{registry}/`.

use std::fmt;

/// A validated registry name: 1–64 characters of `a-z`, `0-9`, `-` and `_`,
/// starting with a letter or digit. Safe in URLs and never a path trick.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistryName(String);

#[derive(Debug, thiserror::Error)]
#[error("invalid registry name {0:?}: use 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit")]
pub struct RegistryNameError(String);

impl RegistryName {
    pub fn parse(raw: &str) -> Result<Self, RegistryNameError> {
        let valid_start = raw
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let valid_chars = raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if valid_start && valid_chars && raw.len() <= 64 {
            Ok(RegistryName(raw.to_owned()))
        } else {
            Err(RegistryNameError(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RegistryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names_and_refuses_path_tricks() {
        for ok in ["default", "team-a", "ci_1", "0"] {
            assert!(RegistryName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", ".", "A", "-x", "a/b", "a%2fb", "a b", "é", &"x".repeat(65)] {
            assert!(RegistryName::parse(bad).is_err(), "{bad}");
        }
    }
}

/// What a user may do in one registry. Ordered: each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Read,
    Publish,
    /// Manage every package of the registry (owners, unpublish) besides publishing.
    Admin,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid role {0:?}: use read, publish or admin")]
pub struct RoleError(String);

impl Role {
    pub fn parse(raw: &str) -> Result<Self, RoleError> {
        match raw {
            "read" => Ok(Role::Read),
            "publish" => Ok(Role::Publish),
            "admin" => Ok(Role::Admin),
            other => Err(RoleError(other.to_owned())),
        }
    }

    /// A role, or `none` for no role at all (a grant taken away, a default of nothing).
    pub fn parse_or_none(raw: &str) -> Result<Option<Self>, RoleError> {
        match raw {
            "none" => Ok(None),
            other => Role::parse(other).map(Some),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Publish => "publish",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
