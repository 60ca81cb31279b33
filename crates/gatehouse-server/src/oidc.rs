//! The OIDC half of trusted publishing: a CI job's ID token (a JWT its issuer signed)
//! is checked against the issuers the administrator configured (`[oidc.issuers.NAME]`):
//! the signature with the issuer's published keys (RS256 or ES256, nothing else), the
//! issuer, the audience (`npm:HOST`), and the token's times. Keys are fetched once and
//! cached; a token signed with a key id not seen yet fetches them again, at most once
//! a minute per issuer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_npm::trust::{JwtPart, PublisherKind};
use gatehouse_policy::document::Age;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::PublicUrl;

/// GitHub Actions' public issuer (the preset of `kind = "github"`).
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// GitLab.com's issuer (the preset of `kind = "gitlab"`; self-managed: the instance URL).
pub const GITLAB_ISSUER: &str = "https://gitlab.com";

/// How far a token's times may be off the server's clock.
const CLOCK_SKEW_SECS: u64 = 60;
/// The largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// The largest token looked at.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// `[oidc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcSettings {
    /// How long an exchanged token publishes.
    pub token_ttl: Age,
    /// A token signed with a key id not seen yet fetches the issuer's keys again, at
    /// most this often per issuer.
    pub jwks_refetch_after: Age,
    pub issuers: BTreeMap<String, IssuerSettings>,
}

impl Default for OidcSettings {
    fn default() -> Self {
        OidcSettings {
            token_ttl: Age { millis: 15 * 60_000 },
            jwks_refetch_after: Age { millis: 60_000 },
            issuers: BTreeMap::new(),
        }
    }
}

/// `[oidc.issuers.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSettings {
    /// Which claims a trust configuration of this issuer matches.
    pub kind: PublisherKind,
    /// The `iss` its tokens carry; GitHub's and GitLab.com's are the presets.
    pub issuer: Option<String>,
    /// Where its keys are; found through its discovery document when omitted.
    pub jwks_url: Option<String>,
    /// A static key set, for a registry that cannot reach the issuer.
    pub jwks_file: Option<PathBuf>,
    /// Audiences accepted besides `npm:HOST` and `npm:HOST:PORT` of the public URL.
    #[serde(default)]
    pub audiences: Vec<String>,
}

impl OidcSettings {
    /// Checks the settings once, at load.
    pub fn validate(&self) -> Result<(), String> {
        if self.token_ttl.millis < 1_000 || self.token_ttl.millis > 24 * 3_600_000 {
            return Err("[oidc] token_ttl must be between 1s and 24h".into());
        }
        for (name, issuer) in &self.issuers {
            let url = issuer.url().ok_or_else(|| {
                format!("[oidc.issuers.{name}]: a generic issuer needs its issuer URL (issuer = \"https://…\")")
            })?;
            check_url(&url).map_err(|why| format!("[oidc.issuers.{name}] issuer: {why}"))?;
            if let Some(jwks) = &issuer.jwks_url {
                check_url(jwks).map_err(|why| format!("[oidc.issuers.{name}] jwks_url: {why}"))?;
            }
        }
        Ok(())
    }
}

impl IssuerSettings {
    /// The issuer URL, with its preset.
    fn url(&self) -> Option<String> {
        let url = self.issuer.clone().or_else(|| match self.kind {
            PublisherKind::Github => Some(GITHUB_ISSUER.into()),
            PublisherKind::Gitlab => Some(GITLAB_ISSUER.into()),
            PublisherKind::Generic => None,
        })?;
        Some(url.trim_end_matches('/').to_owned())
    }
}

/// HTTPS, or plain HTTP on a loopback address only (a test's or a sidecar's issuer).
fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let host = parsed.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "{url:?} is plain http; only https is accepted (http only on a loopback address)"
        )),
        other => Err(format!("{url:?} is {other}:, not https")),
    }
}

/// Why an OIDC token was refused, said to the CI job that sent it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OidcError {
    #[error("the OIDC token is not a JWT ({0}); send the ID token your CI issued")]
    Malformed(String),
    #[error("the OIDC token is signed with {0:?}; only RS256 and ES256 are accepted")]
    Algorithm(String),
    #[error(
        "the OIDC token's issuer {0:?} is not trusted here; an administrator adds it under [oidc.issuers] in the \
         configuration"
    )]
    UnknownIssuer(String),
    #[error("the OIDC token is signed with key {kid:?}, which issuer {issuer} does not publish")]
    UnknownKey { issuer: String, kid: String },
    #[error("the OIDC token's signature does not verify with the keys of issuer {0}")]
    Signature(String),
    #[error("the OIDC token expired; request a new one from your CI")]
    Expired,
    #[error("the OIDC token is not valid yet ({0}); check the clocks of your CI and of this server")]
    NotYetValid(&'static str),
    #[error(
        "the OIDC token's audience is {got}; this registry accepts {accepted} (request the token with that audience)"
    )]
    Audience { got: String, accepted: String },
    #[error("cannot get the keys of issuer {issuer}: {why}; try again later")]
    Keys { issuer: String, why: String },
}

/// A token whose signature, issuer, audience and times were checked.
#[derive(Debug)]
pub struct Verified {
    pub issuer: Arc<Issuer>,
    pub claims: Map<String, Value>,
}

/// A configured issuer and its cached keys.
#[derive(Debug)]
pub struct Issuer {
    pub name: String,
    pub kind: PublisherKind,
    pub url: String,
    jwks_url: Option<String>,
    jwks_file: Option<PathBuf>,
    audiences: Vec<String>,
    keys: tokio::sync::Mutex<Keys>,
}

#[derive(Debug, Default)]
struct Keys {
    set: Option<JwkSet>,
    fetched_at: Option<Instant>,
    /// Why the last fetch failed, when no keys are held.
    last_error: Option<String>,
}

/// Every configured issuer.
pub struct Issuers {
    issuers: Vec<Arc<Issuer>>,
    client: reqwest::Client,
    refetch_after: Duration,
}

impl Issuers {
    pub fn new(settings: &OidcSettings, public_url: &PublicUrl, client: reqwest::Client) -> Issuers {
        let host = reqwest::Url::parse(public_url.as_str()).ok();
        let mut ours = Vec::new();
        if let Some(url) = &host
            && let Some(name) = url.host_str()
        {
            ours.push(format!("npm:{name}"));
            if let Some(port) = url.port() {
                ours.push(format!("npm:{name}:{port}"));
            }
        }
        let issuers = settings
            .issuers
            .iter()
            .filter_map(|(name, issuer)| {
                Some(Arc::new(Issuer {
                    name: name.clone(),
                    kind: issuer.kind,
                    url: issuer.url()?,
                    jwks_url: issuer.jwks_url.clone(),
                    jwks_file: issuer.jwks_file.clone(),
                    audiences: ours.iter().chain(&issuer.audiences).cloned().collect(),
                    keys: tokio::sync::Mutex::new(Keys::default()),
                }))
            })
            .collect();
        Issuers {
            issuers,
            client,
            refetch_after: Duration::from_millis(settings.jwks_refetch_after.millis.unsigned_abs()),
        }
    }

    /// Checks `jwt`; the claims are only read once its signature verified.
    pub async fn verify(&self, jwt: &str) -> Result<Verified, OidcError> {
        if jwt.len() > MAX_TOKEN_BYTES {
            return Err(OidcError::Malformed("it is too large".into()));
        }
        let (header, payload) = unverified_parts(jwt)?;
        let algorithm = match header.get("alg").and_then(Value::as_str) {
            Some("RS256") => Algorithm::RS256,
            Some("ES256") => Algorithm::ES256,
            Some(other) => return Err(OidcError::Algorithm(other.to_owned())),
            None => return Err(OidcError::Malformed("its header names no algorithm".into())),
        };
        let iss = payload.get("iss").and_then(Value::as_str).unwrap_or_default();
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.url == iss.trim_end_matches('/'))
            .ok_or_else(|| OidcError::UnknownIssuer(iss.to_owned()))?;
        let kid = header.get("kid").and_then(Value::as_str);
        let jwk = self.key(issuer, kid, algorithm).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| OidcError::Signature(issuer.name.clone()))?;
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.leeway = CLOCK_SKEW_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[iss]);
        validation.set_audience(&issuer.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(jwt, &key, &validation)
            .map_err(|e| refusal(e.into_kind(), issuer, &payload))?
            .claims;
        let now = jsonwebtoken::get_current_timestamp();
        if claims
            .get("iat")
            .and_then(Value::as_u64)
            .is_some_and(|iat| iat > now + CLOCK_SKEW_SECS)
        {
            return Err(OidcError::NotYetValid("it was issued in the future"));
        }
        Ok(Verified {
            issuer: issuer.clone(),
            claims,
        })
    }

    /// The issuer's key for `kid` (or its only key of the right type, for a token
    /// without a key id), fetching the key set when it is not known yet.
    async fn key(&self, issuer: &Issuer, kid: Option<&str>, algorithm: Algorithm) -> Result<Jwk, OidcError> {
        let mut keys = issuer.keys.lock().await;
        if let Some(found) = keys.set.as_ref().and_then(|set| pick(set, kid, algorithm)) {
            return Ok(found);
        }
        let may_fetch = keys.fetched_at.is_none_or(|at| at.elapsed() >= self.refetch_after);
        if may_fetch {
            // Counted as an attempt even when it fails: a down issuer is not hammered.
            keys.fetched_at = Some(Instant::now());
            match self.fetch_keys(issuer).await {
                Ok(set) => {
                    keys.set = Some(set);
                    keys.last_error = None;
                }
                Err(why) => {
                    tracing::warn!(issuer = %issuer.name, error = %why, "cannot fetch OIDC keys");
                    keys.last_error = Some(why);
                }
            }
        }
        if keys.set.is_none() {
            return Err(OidcError::Keys {
                issuer: issuer.name.clone(),
                why: keys.last_error.clone().unwrap_or_else(|| "no keys fetched yet".into()),
            });
        }
        keys.set
            .as_ref()
            .and_then(|set| pick(set, kid, algorithm))
            .ok_or_else(|| OidcError::UnknownKey {
                issuer: issuer.name.clone(),
                kid: kid.unwrap_or("(none)").to_owned(),
            })
    }

    async fn fetch_keys(&self, issuer: &Issuer) -> Result<JwkSet, String> {
        let bytes = match (&issuer.jwks_file, &issuer.jwks_url) {
            (Some(file), _) => {
                let meta = tokio::fs::metadata(file)
                    .await
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                if meta.len() > MAX_DOCUMENT_BYTES as u64 {
                    return Err(format!("{} is larger than {MAX_DOCUMENT_BYTES} bytes", file.display()));
                }
                tokio::fs::read(file)
                    .await
                    .map_err(|e| format!("{}: {e}", file.display()))?
            }
            (None, Some(url)) => self.get(url).await?,
            (None, None) => {
                let discovery = format!("{}/.well-known/openid-configuration", issuer.url);
                let document: Value = serde_json::from_slice(&self.get(&discovery).await?)
                    .map_err(|e| format!("{discovery} is not JSON: {e}"))?;
                let jwks_uri = document
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{discovery} names no jwks_uri"))?;
                check_url(jwks_uri)?;
                self.get(jwks_uri).await?
            }
        };
        let set: JwkSet = serde_json::from_slice(&bytes).map_err(|e| format!("the key set is not a JWKS: {e}"))?;
        tracing::info!(issuer = %issuer.name, keys = set.keys.len(), "fetched OIDC keys");
        Ok(set)
    }

    /// A bounded GET (no redirects, the upstream client's timeouts).
    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url} answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The key a token names, of the type its algorithm needs.
fn pick(set: &JwkSet, kid: Option<&str>, algorithm: Algorithm) -> Option<Jwk> {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    let fits = |jwk: &Jwk| match (&jwk.algorithm, algorithm) {
        (P::RSA(_), Algorithm::RS256) => true,
        (P::EllipticCurve(ec), Algorithm::ES256) => ec.curve == jsonwebtoken::jwk::EllipticCurve::P256,
        _ => false,
    };
    match kid {
        Some(kid) => set
            .keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid) && fits(k)),
        None => {
            let mut fitting = set.keys.iter().filter(|k| fits(k));
            match (fitting.next(), fitting.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        }
    }
    .cloned()
}

/// The header and claims, before anything is verified.
fn unverified_parts(jwt: &str) -> Result<(JwtPart, JwtPart), OidcError> {
    gatehouse_npm::trust::jwt_parts(jwt).map_err(|e| OidcError::Malformed(e.to_string()))
}

fn refusal(kind: jsonwebtoken::errors::ErrorKind, issuer: &Issuer, payload: &JwtPart) -> OidcError {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::ExpiredSignature => OidcError::Expired,
        K::ImmatureSignature => OidcError::NotYetValid("its nbf is in the future"),
        K::InvalidAudience => OidcError::Audience {
            got: payload.get("aud").map_or_else(|| "missing".into(), Value::to_string),
            accepted: issuer.audiences.join(", "),
        },
        K::MissingRequiredClaim(claim) if claim == "aud" => OidcError::Audience {
            got: "missing".into(),
            accepted: issuer.audiences.join(", "),
        },
        K::MissingRequiredClaim(claim) => OidcError::Malformed(format!("it has no {claim} claim")),
        K::InvalidSignature | K::InvalidAlgorithm | K::InvalidEcdsaKey | K::InvalidRsaKey(_) => {
            OidcError::Signature(issuer.name.clone())
        }
        other => OidcError::Malformed(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_are_https_or_loopback_http_and_generic_ones_name_their_url() {
        assert!(check_url("https://token.actions.githubusercontent.com").is_ok());
        assert!(check_url("http://127.0.0.1:4000").is_ok());
        assert!(check_url("http://[::1]:4000/x").is_ok());
        assert!(check_url("http://localhost/").is_ok());
        let err = check_url("http://issuer.example.com").expect_err("plain http");
        assert!(err.contains("only https is accepted"), "{err}");
        assert!(check_url("ftp://x").is_err());
        let settings: OidcSettings = toml::from_str("[issuers.corp]\nkind = \"generic\"\n").expect("parses");
        let err = settings.validate().expect_err("no url");
        assert!(err.contains("a generic issuer needs its issuer URL"), "{err}");
        let settings: OidcSettings = toml::from_str("token_ttl = \"0s\"\n").expect("parses");
        assert!(settings.validate().is_err());
        let settings: OidcSettings = toml::from_str("[issuers.github]\nkind = \"github\"\n").expect("parses");
        assert!(settings.validate().is_ok());
        assert_eq!(settings.issuers["github"].url().as_deref(), Some(GITHUB_ISSUER));
    }

    #[test]
    fn a_token_that_is_no_jwt_says_so() {
        for (jwt, expected) in [
            ("abc", "three parts"),
            ("a.b.c.d", "three parts"),
            ("!!.e30.sig", "header is not base64url"),
            ("e30.bm90IGpzb24.sig", "payload is not a JSON object"),
        ] {
            let err = unverified_parts(jwt).expect_err(jwt);
            assert!(err.to_string().contains(expected), "{jwt}: {err}");
        }
    }
}
