//! What an upstream is: the public npm registry, another npm registry by URL, or
//! another registry of this server.

use std::fmt;

use gatehouse_store::registry::RegistryName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamSpec {
    /// The public npm registry (its URL comes from `upstream.npmjs_url`).
    Npmjs,
    /// Any npm-compatible registry; stored with a trailing slash.
    Url(String),
    /// Another registry of this server (pulling from it is promotion).
    Registry(RegistryName),
}

#[derive(Debug, thiserror::Error)]
#[error("invalid upstream {0:?}: use npmjs, an http(s) URL, or registry:NAME")]
pub struct SpecError(String);

impl UpstreamSpec {
    pub fn parse(raw: &str) -> Result<Self, SpecError> {
        let err = || SpecError(raw.to_owned());
        if raw == "npmjs" {
            return Ok(UpstreamSpec::Npmjs);
        }
        if let Some(name) = raw.strip_prefix("registry:") {
            return RegistryName::parse(name).map(UpstreamSpec::Registry).map_err(|_| err());
        }
        let rest = raw
            .strip_prefix("https://")
            .or_else(|| raw.strip_prefix("http://"))
            .ok_or_else(err)?;
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() || raw.contains(['?', '#', ' ', '@']) {
            return Err(err());
        }
        let normalized = if raw.ends_with('/') {
            raw.to_owned()
        } else {
            format!("{raw}/")
        };
        Ok(UpstreamSpec::Url(normalized))
    }
}

impl fmt::Display for UpstreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamSpec::Npmjs => f.write_str("npmjs"),
            UpstreamSpec::Url(url) => f.write_str(url),
            UpstreamSpec::Registry(name) => write!(f, "registry:{name}"),
        }
    }
}

/// `scheme://host[:port]` of a URL, for same-origin checks.
pub fn origin(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")? + 3;
    let host_end = url[scheme_end..].find('/').map_or(url.len(), |i| scheme_end + i);
    Some(&url[..host_end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_and_bad_ones_are_refused() {
        assert_eq!(UpstreamSpec::parse("npmjs").unwrap(), UpstreamSpec::Npmjs);
        assert_eq!(
            UpstreamSpec::parse("https://npm.example.com/r/x").unwrap().to_string(),
            "https://npm.example.com/r/x/"
        );
        assert_eq!(
            UpstreamSpec::parse("registry:team").unwrap().to_string(),
            "registry:team"
        );
        for bad in [
            "ftp://x",
            "registry:",
            "registry:../x",
            "https://",
            "https://u:p@host/",
            "x",
        ] {
            assert!(UpstreamSpec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(origin("https://h:8/a/b"), Some("https://h:8"));
        assert_eq!(origin("http://h"), Some("http://h"));
    }
}
