//! Request paths under `/r/{registry}/`, parsed into a typed route.
//!
//! Paths are parsed from the raw (still percent-encoded) URI so that `@scope%2fname`
//! stays one segment. Any `.`/`..` segment, encoded or not, is refused outright.

use percent_encoding::percent_decode_str;

use super::name::{NameError, PackageName};

/// What a request under `/r/{registry}/` asks for (the method is matched by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/` itself.
    Root,
    Ping,
    Whoami,
    Search,
    All,
    /// `POST -/v1/login`: starts a browser login.
    WebLogin,
    /// `-/v1/login/{id}`: the page the browser opens (GET) and its form (POST).
    WebLoginPage {
        id: String,
    },
    /// `-/v1/done/{id}`: the CLI polls here for its token.
    WebLoginDone {
        id: String,
    },
    /// `-/user/org.couchdb.user:{name}[/-rev/{rev}]`
    User {
        name: String,
    },
    /// `-/user/token/{token}` (npm logout)
    UserToken {
        token: String,
    },
    Tokens,
    Token {
        key: String,
    },
    /// `-/npm/v1/user`: `npm profile get|set`.
    Profile,
    DistTags {
        name: PackageName,
    },
    DistTag {
        name: PackageName,
        tag: String,
    },
    Collaborators {
        name: PackageName,
    },
    Visibility {
        name: PackageName,
    },
    /// `-/package/{name}/trust`: `npm trust github|gitlab|list`.
    Trust {
        name: PackageName,
    },
    /// `-/package/{name}/trust/{id}`: `npm trust revoke`.
    TrustConfig {
        name: PackageName,
        id: String,
    },
    /// `-/npm/v1/oidc/token/exchange/package/{name}`: a CI job's OIDC token for a
    /// publish token (trusted publishing).
    OidcExchange {
        name: PackageName,
    },
    /// `-/npm/v1/attestations/{name}@{version}`: a version's provenance bundles
    /// (`npm audit signatures`).
    Attestations {
        name: PackageName,
        version: String,
    },
    AuditBulk,
    AuditLegacy,
    /// Any other `-/…` endpoint.
    UnknownApi,
    Packument {
        name: PackageName,
    },
    VersionOrTag {
        name: PackageName,
        spec: String,
    },
    Tarball {
        name: PackageName,
        file: String,
    },
    PackageRev {
        name: PackageName,
        rev: String,
    },
    TarballRev {
        name: PackageName,
        file: String,
        rev: String,
    },
}

impl Route {
    /// The route's template under `/r/{registry}`, for metrics and logs: names,
    /// versions, tags and ids stay out.
    pub fn template(&self) -> &'static str {
        match self {
            Route::Root => "/",
            Route::Ping => "/-/ping",
            Route::Whoami => "/-/whoami",
            Route::Search => "/-/v1/search",
            Route::All => "/-/all",
            Route::WebLogin => "/-/v1/login",
            Route::WebLoginPage { .. } => "/-/v1/login/{id}",
            Route::WebLoginDone { .. } => "/-/v1/done/{id}",
            Route::User { .. } => "/-/user/org.couchdb.user:{user}",
            Route::UserToken { .. } => "/-/user/token/{token}",
            Route::Tokens => "/-/npm/v1/tokens",
            Route::Token { .. } => "/-/npm/v1/tokens/token/{key}",
            Route::Profile => "/-/npm/v1/user",
            Route::DistTags { .. } => "/-/package/{name}/dist-tags",
            Route::DistTag { .. } => "/-/package/{name}/dist-tags/{tag}",
            Route::Collaborators { .. } => "/-/package/{name}/collaborators",
            Route::Visibility { .. } => "/-/package/{name}/visibility",
            Route::Trust { .. } => "/-/package/{name}/trust",
            Route::TrustConfig { .. } => "/-/package/{name}/trust/{id}",
            Route::OidcExchange { .. } => "/-/npm/v1/oidc/token/exchange/package/{name}",
            Route::Attestations { .. } => "/-/npm/v1/attestations/{name}@{version}",
            Route::AuditBulk => "/-/npm/v1/security/advisories/bulk",
            Route::AuditLegacy => "/-/npm/v1/security/audits",
            Route::UnknownApi => "/-/{unknown}",
            Route::Packument { .. } => "/{name}",
            Route::VersionOrTag { .. } => "/{name}/{version}",
            Route::Tarball { .. } => "/{name}/-/{file}",
            Route::PackageRev { .. } => "/{name}/-rev/{rev}",
            Route::TarballRev { .. } => "/{name}/-/{file}/-rev/{rev}",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("invalid path: {0}")]
    BadPath(&'static str),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("not found")]
    NotFound,
}

/// Parses the raw path that follows `/r/{registry}` (starting with `/` or empty).
pub fn parse(raw_rest: &str) -> Result<Route, RouteError> {
    let rest = raw_rest.strip_prefix('/').unwrap_or(raw_rest);
    if rest.is_empty() {
        return Ok(Route::Root);
    }
    let segments: Vec<&str> = rest.split('/').collect();
    for segment in &segments {
        let decoded = percent_decode_str(segment).decode_utf8_lossy();
        if decoded.split('/').any(|part| part == "." || part == "..") {
            return Err(RouteError::BadPath("'.' and '..' segments are not allowed"));
        }
    }
    if segments[0] == "-" {
        return parse_api(&segments[1..]);
    }
    let (name, rest) = take_package_name(&segments)?;
    match rest {
        [] => Ok(Route::Packument { name }),
        [spec] if !spec.is_empty() => Ok(Route::VersionOrTag {
            name,
            spec: decode(spec)?,
        }),
        ["-", file] => Ok(Route::Tarball {
            name,
            file: decode(file)?,
        }),
        ["-rev", rev] => Ok(Route::PackageRev {
            name,
            rev: decode(rev)?,
        }),
        ["-", file, "-rev", rev] => Ok(Route::TarballRev {
            name,
            file: decode(file)?,
            rev: decode(rev)?,
        }),
        _ => Err(RouteError::NotFound),
    }
}

fn parse_api(segments: &[&str]) -> Result<Route, RouteError> {
    let route = match segments {
        ["ping"] => Route::Ping,
        ["whoami"] => Route::Whoami,
        ["v1", "search"] => Route::Search,
        ["all"] => Route::All,
        ["v1", "login"] => Route::WebLogin,
        ["v1", "login", id] => Route::WebLoginPage { id: decode(id)? },
        ["v1", "done", id] => Route::WebLoginDone { id: decode(id)? },
        ["user", user] | ["user", user, "-rev", _] => {
            let decoded = decode(user)?;
            match decoded.strip_prefix("org.couchdb.user:") {
                Some(name) => Route::User { name: name.to_owned() },
                None => return Err(RouteError::NotFound),
            }
        }
        ["user", "token", token] => Route::UserToken { token: decode(token)? },
        ["npm", "v1", "tokens"] => Route::Tokens,
        ["npm", "v1", "user"] => Route::Profile,
        ["npm", "v1", "tokens", "token", key] => Route::Token { key: decode(key)? },
        ["npm", "v1", "security", "advisories", "bulk"] => Route::AuditBulk,
        ["npm", "v1", "security", "audits"] | ["npm", "v1", "security", "audits", "quick"] => Route::AuditLegacy,
        ["package", package @ ..] => return parse_package_api(package),
        ["npm", "v1", "attestations", spec @ ..] => return parse_attestations(spec),
        ["npm", "v1", "oidc", "token", "exchange", "package", package @ ..] => {
            let (name, rest) = take_package_name(package)?;
            if !rest.is_empty() {
                return Err(RouteError::NotFound);
            }
            Route::OidcExchange { name }
        }
        _ => Route::UnknownApi,
    };
    Ok(route)
}

/// `{name}@{version}` as one segment (`lodash@1.0.0`, `@acme%2flib@1.0.0`) or two
/// (`@acme/lib@1.0.0`).
fn parse_attestations(segments: &[&str]) -> Result<Route, RouteError> {
    // The version's `@` is the last one; a scope's `@` begins the name.
    let split = |segment: &'_ str| -> Option<(String, String)> {
        let at = segment.get(1..)?.rfind('@')? + 1;
        Some((segment[..at].to_owned(), segment[at + 1..].to_owned()))
    };
    let (name, version) = match segments {
        [one] => {
            let (name, version) = split(one).ok_or(RouteError::NotFound)?;
            (PackageName::from_path_segment(&name)?, version)
        }
        [scope, rest] if scope.starts_with('@') => {
            let at = rest.rfind('@').ok_or(RouteError::NotFound)?;
            let name = PackageName::parse(&format!("{}/{}", decode(scope)?, decode(&rest[..at])?))?;
            (name, rest[at + 1..].to_owned())
        }
        _ => return Err(RouteError::NotFound),
    };
    let version = decode(&version)?;
    if version.is_empty() {
        return Err(RouteError::NotFound);
    }
    Ok(Route::Attestations { name, version })
}

/// `-/package/{name}/dist-tags[/{tag}]`, `/collaborators`, `/visibility`.
fn parse_package_api(segments: &[&str]) -> Result<Route, RouteError> {
    let (name, rest) = take_package_name(segments)?;
    match rest {
        ["dist-tags"] => Ok(Route::DistTags { name }),
        ["dist-tags", tag] => Ok(Route::DistTag {
            name,
            tag: decode(tag)?,
        }),
        ["collaborators"] => Ok(Route::Collaborators { name }),
        ["visibility"] => Ok(Route::Visibility { name }),
        ["trust"] => Ok(Route::Trust { name }),
        ["trust", id] => Ok(Route::TrustConfig { name, id: decode(id)? }),
        _ => Ok(Route::UnknownApi),
    }
}

/// A package name is one segment (`lodash`, `@scope%2fname`) or two (`@scope/name`).
fn take_package_name<'a, 'b>(segments: &'a [&'b str]) -> Result<(PackageName, &'a [&'b str]), RouteError> {
    match segments {
        [scope, name, rest @ ..] if scope.starts_with('@') && !scope.contains('%') => {
            let name = PackageName::parse(&format!("{}/{}", decode(scope)?, decode(name)?))?;
            Ok((name, rest))
        }
        [first, rest @ ..] if !first.is_empty() => Ok((PackageName::from_path_segment(first)?, rest)),
        _ => Err(RouteError::NotFound),
    }
}

/// Percent-decodes one segment; refuses invalid UTF-8, encoded slashes and control characters.
fn decode(segment: &str) -> Result<String, RouteError> {
    let decoded = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| RouteError::BadPath("path is not valid UTF-8"))?;
    if decoded.contains(['/', '\\']) || decoded.chars().any(char::is_control) {
        return Err(RouteError::BadPath(
            "encoded slashes and control characters are not allowed",
        ));
    }
    Ok(decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> PackageName {
        PackageName::parse(s).expect("valid name")
    }

    #[test]
    fn package_routes_in_every_spelling() {
        assert_eq!(parse("/lodash"), Ok(Route::Packument { name: name("lodash") }));
        for scoped in ["/@acme%2flib", "/@acme%2Flib", "/@acme/lib"] {
            assert_eq!(
                parse(scoped),
                Ok(Route::Packument {
                    name: name("@acme/lib")
                }),
                "{scoped}"
            );
        }
        assert_eq!(
            parse("/@acme/lib/-/lib-1.0.0.tgz"),
            Ok(Route::Tarball {
                name: name("@acme/lib"),
                file: "lib-1.0.0.tgz".into()
            })
        );
        assert_eq!(
            parse("/@acme%2flib/-/lib-1.0.0.tgz"),
            Ok(Route::Tarball {
                name: name("@acme/lib"),
                file: "lib-1.0.0.tgz".into()
            })
        );
        assert_eq!(
            parse("/lodash/latest"),
            Ok(Route::VersionOrTag {
                name: name("lodash"),
                spec: "latest".into()
            })
        );
        assert_eq!(
            parse("/lodash/-rev/3-abc"),
            Ok(Route::PackageRev {
                name: name("lodash"),
                rev: "3-abc".into()
            })
        );
        assert_eq!(
            parse("/lodash/-/lodash-1.0.0.tgz/-rev/3-abc"),
            Ok(Route::TarballRev {
                name: name("lodash"),
                file: "lodash-1.0.0.tgz".into(),
                rev: "3-abc".into()
            })
        );
    }

    #[test]
    fn attestation_routes_take_every_spelling_of_a_scoped_name() {
        for path in [
            "/-/npm/v1/attestations/@acme%2flib@1.0.0",
            "/-/npm/v1/attestations/@acme/lib@1.0.0",
            "/-/npm/v1/attestations/@acme%2Flib@1.0.0",
        ] {
            assert_eq!(
                parse(path),
                Ok(Route::Attestations {
                    name: name("@acme/lib"),
                    version: "1.0.0".into()
                }),
                "{path}"
            );
        }
        assert_eq!(
            parse("/-/npm/v1/attestations/lodash@4.17.21"),
            Ok(Route::Attestations {
                name: name("lodash"),
                version: "4.17.21".into()
            })
        );
        assert_eq!(parse("/-/npm/v1/attestations/lodash"), Err(RouteError::NotFound));
        assert_eq!(parse("/-/npm/v1/attestations/lodash@"), Err(RouteError::NotFound));
        assert!(parse("/-/npm/v1/attestations/..@1.0.0").is_err());
    }

    #[test]
    fn trusted_publishing_routes() {
        let lib = || name("@acme/lib");
        assert_eq!(parse("/-/package/@acme%2flib/trust"), Ok(Route::Trust { name: lib() }));
        assert_eq!(
            parse("/-/package/@acme/lib/trust/12"),
            Ok(Route::TrustConfig {
                name: lib(),
                id: "12".into()
            })
        );
        assert_eq!(
            parse("/-/npm/v1/oidc/token/exchange/package/@acme%2flib"),
            Ok(Route::OidcExchange { name: lib() })
        );
        assert_eq!(
            parse("/-/npm/v1/oidc/token/exchange/package/lodash/extra"),
            Err(RouteError::NotFound)
        );
        assert!(parse("/-/npm/v1/oidc/token/exchange/package/%2e%2e").is_err());
    }

    #[test]
    fn api_routes() {
        assert_eq!(parse("/-/ping"), Ok(Route::Ping));
        assert_eq!(
            parse("/-/user/org.couchdb.user:alice"),
            Ok(Route::User { name: "alice".into() })
        );
        assert_eq!(
            parse("/-/user/org.couchdb.user%3Aalice/-rev/1-x"),
            Ok(Route::User { name: "alice".into() })
        );
        assert_eq!(
            parse("/-/package/@acme%2flib/dist-tags/beta"),
            Ok(Route::DistTag {
                name: name("@acme/lib"),
                tag: "beta".into()
            })
        );
        assert_eq!(
            parse("/-/package/lodash/dist-tags"),
            Ok(Route::DistTags { name: name("lodash") })
        );
        assert_eq!(
            parse("/-/npm/v1/tokens/token/abc"),
            Ok(Route::Token { key: "abc".into() })
        );
        assert_eq!(parse("/-/nothing/here"), Ok(Route::UnknownApi));
        assert_eq!(parse(""), Ok(Route::Root));
        assert_eq!(parse("/"), Ok(Route::Root));
    }

    #[test]
    fn traversal_and_encoding_tricks_are_refused() {
        for bad in [
            "/..",
            "/../b/lodash",
            "/%2e%2e/b/lodash",
            "/%2E%2E",
            "/lodash/..",
            "/@../x",
            "/@acme/..",
            "/lodash%2f..%2fx",
            "/a%00b",
            "/lodash/-/%2e%2e%2fetc",
            "/-/package/%2e%2e/dist-tags",
        ] {
            assert!(parse(bad).is_err(), "{bad} must be refused");
        }
    }

    /// Found by the `route_parse` fuzz target: a `.` between encoded slashes
    /// (`a%2f.%2fb`) passed the check, which refused only `..` there. No typed route
    /// let it through (their parts refuse slashes), but the rule is any `.` segment.
    #[test]
    fn a_dot_between_encoded_slashes_is_refused() {
        for bad in ["/-/x%2f.%2fy", "/lodash%2f%2e", "/-/package/@acme%2f./dist-tags"] {
            assert_eq!(
                parse(bad),
                Err(RouteError::BadPath("'.' and '..' segments are not allowed")),
                "{bad}"
            );
        }
    }
}
