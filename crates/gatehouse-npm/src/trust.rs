//! Trusted publishing (npm ≥ 11.5): the trust configurations `npm trust github|gitlab`
//! posts and `npm trust list` reads, and whether the claims of a CI job's OIDC token
//! match one. Pure: the token's signature is checked before anything here is asked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Which CI system a configuration trusts, and so which claims it compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublisherKind {
    /// GitHub Actions: `repository`, the workflow file of `workflow_ref`, `environment`.
    Github,
    /// GitLab CI: `project_path`, the file of `ci_config_ref_uri`, `environment`.
    Gitlab,
    /// Any other OIDC issuer: the claims the configuration names, each equal.
    Generic,
}

impl PublisherKind {
    pub fn parse(text: &str) -> Option<PublisherKind> {
        match text {
            "github" => Some(PublisherKind::Github),
            "gitlab" => Some(PublisherKind::Gitlab),
            "generic" => Some(PublisherKind::Generic),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PublisherKind::Github => "github",
            PublisherKind::Gitlab => "gitlab",
            PublisherKind::Generic => "generic",
        }
    }

    /// The name npm writes in `_npmUser` for a version this kind published.
    pub fn display_name(self) -> &'static str {
        match self {
            PublisherKind::Github => "GitHub Actions",
            PublisherKind::Gitlab => "GitLab CI/CD",
            PublisherKind::Generic => "OIDC trusted publisher",
        }
    }
}

/// The claims GitHub's and GitLab's configurations and tokens speak of: the project,
/// the claim whose value names the file (the workflow, the CI config), and the run.
struct CiClaims {
    kind: &'static str,
    project: &'static str,
    project_case_insensitive: bool,
    /// The token's claim naming the file; a configuration writes `{CLAIM: {"file": …}}`.
    file_ref: &'static str,
    /// `file_ref.file`, as a configuration missing it is told.
    file_claim: &'static str,
    /// What a mismatch of the file says.
    file_label: &'static str,
    file_of: fn(&str) -> Option<String>,
    run_id: &'static str,
}

const GITHUB: CiClaims = CiClaims {
    kind: "github",
    project: "repository",
    project_case_insensitive: true,
    file_ref: "workflow_ref",
    file_claim: "workflow_ref.file",
    file_label: "the workflow file of workflow_ref",
    file_of: workflow_file,
    run_id: "run_id",
};

const GITLAB: CiClaims = CiClaims {
    kind: "gitlab",
    project: "project_path",
    project_case_insensitive: false,
    file_ref: "ci_config_ref_uri",
    file_claim: "ci_config_ref_uri.file",
    file_label: "the file of ci_config_ref_uri",
    file_of: ci_config_file,
    run_id: "pipeline_id",
};

impl PublisherKind {
    /// The claims of a CI-specific kind; `None` for a generic issuer.
    fn ci_claims(self) -> Option<&'static CiClaims> {
        match self {
            PublisherKind::Github => Some(&GITHUB),
            PublisherKind::Gitlab => Some(&GITLAB),
            PublisherKind::Generic => None,
        }
    }
}

/// What a trust configuration requires of a token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRule {
    pub kind: PublisherKind,
    /// GitHub's `owner/repo`, GitLab's `group/project`; `None` for generic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The workflow file (GitHub) or CI config file (GitLab).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Generic: the configured issuer's name (`[oidc.issuers.NAME]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Generic: claims that must be equal.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
}

/// Why a trust configuration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("a trust configuration needs a \"type\": \"github\", \"gitlab\" or \"generic\"")]
    Kind,
    #[error("a {kind} trust configuration needs claims.{claim}")]
    Missing { kind: &'static str, claim: &'static str },
    #[error("claims.{claim} must be {what}")]
    Invalid { claim: &'static str, what: &'static str },
    #[error("a generic trust configuration names its issuer (\"issuer\") and at least one claim")]
    Generic,
    #[error(
        "this registry supports trusted publishing for `npm publish` only: pass --allow-publish \
         (permission \"createPackage\")"
    )]
    Permissions,
    #[error("a trust configuration is a JSON object, or a list of them")]
    Shape,
}

/// The claim a token's claims did not satisfy, said to the CI job that sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{claim} is {actual:?}, the trust configuration expects {expected:?}")]
pub struct Mismatch {
    pub claim: String,
    pub actual: String,
    pub expected: String,
}

fn text(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty())
}

impl TrustRule {
    /// Reads the body of `POST /-/package/{name}/trust` (npm sends a list of one).
    pub fn parse_npm_body(body: &Value) -> Result<Vec<TrustRule>, TrustError> {
        match body {
            Value::Array(items) if !items.is_empty() => items.iter().map(TrustRule::parse_npm).collect(),
            Value::Object(_) => Ok(vec![TrustRule::parse_npm(body)?]),
            _ => Err(TrustError::Shape),
        }
    }

    /// One configuration as `npm trust` writes it.
    pub fn parse_npm(item: &Value) -> Result<TrustRule, TrustError> {
        let kind = text(item.get("type"))
            .and_then(PublisherKind::parse)
            .ok_or(TrustError::Kind)?;
        if let Some(permissions) = item.get("permissions").and_then(Value::as_array)
            && !permissions.iter().any(|p| p == "createPackage")
        {
            return Err(TrustError::Permissions);
        }
        let claims = item.get("claims").and_then(Value::as_object);
        let claim = |key: &str| text(claims.and_then(|c| c.get(key)));
        let file_of = |key: &str| text(claims.and_then(|c| c.get(key)).and_then(|v| v.get("file")));
        let environment = claim("environment").map(str::to_owned);
        let rule = match kind.ci_claims() {
            Some(ci) => {
                let project = claim(ci.project).ok_or(TrustError::Missing {
                    kind: ci.kind,
                    claim: ci.project,
                })?;
                let file = file_of(ci.file_ref).ok_or(TrustError::Missing {
                    kind: ci.kind,
                    claim: ci.file_claim,
                })?;
                // GitHub's names have a known shape.
                if kind == PublisherKind::Github {
                    if project.split('/').filter(|p| !p.is_empty()).count() != 2 {
                        return Err(TrustError::Invalid {
                            claim: "repository",
                            what: "owner/repository",
                        });
                    }
                    if file.contains('/') || !(file.ends_with(".yml") || file.ends_with(".yaml")) {
                        return Err(TrustError::Invalid {
                            claim: "workflow_ref.file",
                            what: "a workflow file name ending in .yml or .yaml, without its folder",
                        });
                    }
                }
                TrustRule {
                    kind,
                    project: Some(project.to_owned()),
                    file: Some(file.to_owned()),
                    environment,
                    issuer: None,
                    claims: BTreeMap::new(),
                }
            }
            None => {
                let issuer = text(item.get("issuer")).ok_or(TrustError::Generic)?;
                let required: BTreeMap<String, String> = claims
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect();
                if required.is_empty() {
                    return Err(TrustError::Generic);
                }
                TrustRule {
                    kind,
                    project: None,
                    file: None,
                    environment: None,
                    issuer: Some(issuer.to_owned()),
                    claims: required,
                }
            }
        };
        Ok(rule)
    }

    /// The configuration as `npm trust list` reads it.
    pub fn to_npm(&self, id: &str) -> Value {
        let mut claims = Map::new();
        match self.kind.ci_claims() {
            Some(ci) => {
                claims.insert(ci.project.into(), json!(self.project));
                claims.insert(ci.file_ref.into(), json!({ "file": self.file }));
            }
            None => {
                for (k, v) in &self.claims {
                    claims.insert(k.clone(), json!(v));
                }
            }
        }
        if let Some(environment) = &self.environment {
            claims.insert("environment".into(), json!(environment));
        }
        let mut out = json!({
            "id": id,
            "type": self.kind.as_str(),
            "claims": claims,
            "permissions": ["createPackage"],
        });
        if let (Some(issuer), Some(obj)) = (&self.issuer, out.as_object_mut()) {
            obj.insert("issuer".into(), json!(issuer));
        }
        out
    }

    /// Whether a token with these (verified) claims is the publisher this trusts.
    pub fn check(&self, claims: &Map<String, Value>) -> Result<(), Mismatch> {
        let actual = |key: &str| text(claims.get(key)).unwrap_or_default().to_owned();
        let expect = |claim: &str, actual: String, expected: &str, fold_case: bool| {
            let same = if fold_case {
                actual.eq_ignore_ascii_case(expected)
            } else {
                actual == expected
            };
            if same {
                Ok(())
            } else {
                Err(Mismatch {
                    claim: claim.to_owned(),
                    actual,
                    expected: expected.to_owned(),
                })
            }
        };
        match self.kind.ci_claims() {
            Some(ci) => {
                expect(
                    ci.project,
                    actual(ci.project),
                    self.project.as_deref().unwrap_or_default(),
                    ci.project_case_insensitive,
                )?;
                let file = (ci.file_of)(&actual(ci.file_ref)).unwrap_or_default();
                expect(ci.file_label, file, self.file.as_deref().unwrap_or_default(), false)?;
            }
            None => {
                for (claim, expected) in &self.claims {
                    expect(claim, actual(claim), expected, false)?;
                }
            }
        }
        if let Some(environment) = &self.environment {
            expect("environment", actual("environment"), environment, false)?;
        }
        Ok(())
    }
}

/// A JWT's header or claims: a JSON object.
pub type JwtPart = Map<String, Value>;

/// Why a bearer credential is not a JWT at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtShapeError {
    #[error("it does not have three parts")]
    Parts,
    #[error("its {0} is not base64url")]
    Base64(&'static str),
    #[error("its {0} is not a JSON object")]
    Json(&'static str),
}

/// A JWT's header and claims, decoded and **not verified**: only for choosing the
/// issuer and the key that verify it, and for wording a refusal.
pub fn jwt_parts(jwt: &str) -> Result<(JwtPart, JwtPart), JwtShapeError> {
    use base64::Engine as _;
    let mut parts = jwt.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtShapeError::Parts);
    };
    let decode = |part: &str, what: &'static str| -> Result<JwtPart, JwtShapeError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| JwtShapeError::Base64(what))?;
        serde_json::from_slice(&bytes).map_err(|_| JwtShapeError::Json(what))
    };
    Ok((decode(header, "header")?, decode(payload, "payload")?))
}

/// `owner/repo/.github/workflows/release.yml@refs/heads/main` → `release.yml`.
pub fn workflow_file(workflow_ref: &str) -> Option<String> {
    let path = workflow_ref.split_once('@').map_or(workflow_ref, |(path, _)| path);
    path.rsplit('/').next().filter(|f| !f.is_empty()).map(str::to_owned)
}

/// `gitlab.com/group/project//.gitlab-ci.yml@refs/heads/main` → `.gitlab-ci.yml`.
pub fn ci_config_file(uri: &str) -> Option<String> {
    let path = uri.split_once('@').map_or(uri, |(path, _)| path);
    path.split_once("//")
        .map(|(_, file)| file.to_owned())
        .filter(|f| !f.is_empty())
}

/// Who published a version through trusted publishing, from the token's claims:
/// recorded with the exchanged token and shown with the version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedBy {
    pub kind: PublisherKind,
    /// The trust configuration that matched.
    pub config_id: String,
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

impl PublishedBy {
    pub fn from_claims(kind: PublisherKind, config_id: &str, claims: &Map<String, Value>) -> PublishedBy {
        let claim = |key: &str| match claims.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let (repository, workflow, run_id) = match kind.ci_claims() {
            Some(ci) => (
                claim(ci.project),
                claim(ci.file_ref).and_then(|r| (ci.file_of)(&r)),
                claim(ci.run_id),
            ),
            None => (claim("repository"), None, None),
        };
        PublishedBy {
            kind,
            config_id: config_id.to_owned(),
            issuer: claim("iss").unwrap_or_default(),
            repository,
            workflow,
            git_ref: claim("ref"),
            sha: claim("sha"),
            run_id,
            environment: claim("environment"),
        }
    }

    /// `_npmUser` as the public registry writes it for a trusted publish, with the
    /// run that published it.
    pub fn npm_user(&self) -> Value {
        let mut publisher = json!({ "id": self.kind.as_str(), "oidcConfigId": self.config_id });
        if let (Some(obj), Value::Object(run)) = (publisher.as_object_mut(), json!(self)) {
            for key in ["repository", "workflow", "ref", "sha", "run_id", "environment"] {
                if let Some(value) = run.get(key) {
                    obj.insert(key.into(), value.clone());
                }
            }
        }
        json!({
            "name": self.kind.display_name(),
            "email": "",
            "trustedPublisher": publisher,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github_claims(repository: &str, workflow: &str, environment: Option<&str>) -> Map<String, Value> {
        let mut claims = json!({
            "iss": "https://token.actions.githubusercontent.com",
            "repository": repository,
            "workflow_ref": format!("{repository}/.github/workflows/{workflow}@refs/heads/main"),
            "ref": "refs/heads/main",
            "sha": "0123abc",
            "run_id": "42",
        });
        if let (Some(env), Some(obj)) = (environment, claims.as_object_mut()) {
            obj.insert("environment".into(), json!(env));
        }
        claims.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn what_npm_trust_github_posts_is_read_and_listed_back() {
        let body = json!([{"type": "github", "claims": {"repository": "acme/lib", "workflow_ref": {"file": "release.yml"},
                          "environment": "prod"}, "permissions": ["createPackage"]}]);
        let rules = TrustRule::parse_npm_body(&body).expect("parses");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].project.as_deref(), Some("acme/lib"));
        assert_eq!(rules[0].file.as_deref(), Some("release.yml"));
        let listed = rules[0].to_npm("7");
        assert_eq!(listed["id"], "7");
        assert_eq!(listed["claims"], body[0]["claims"]);
        assert_eq!(TrustRule::parse_npm(&listed).expect("round trip"), rules[0]);
    }

    #[test]
    fn configurations_missing_what_they_must_say_are_refused() {
        let cases = [
            (json!({"claims": {}}), TrustError::Kind),
            (
                json!({"type": "github", "claims": {"workflow_ref": {"file": "r.yml"}}}),
                TrustError::Missing {
                    kind: "github",
                    claim: "repository",
                },
            ),
            (
                json!({"type": "github", "claims": {"repository": "acme", "workflow_ref": {"file": "r.yml"}}}),
                TrustError::Invalid {
                    claim: "repository",
                    what: "owner/repository",
                },
            ),
            (
                json!({"type": "github", "claims": {"repository": "a/b", "workflow_ref": {"file": ".github/workflows/r.yml"}}}),
                TrustError::Invalid {
                    claim: "workflow_ref.file",
                    what: "a workflow file name ending in .yml or .yaml, without its folder",
                },
            ),
            (
                json!({"type": "gitlab", "claims": {"project_path": "g/p"}}),
                TrustError::Missing {
                    kind: "gitlab",
                    claim: "ci_config_ref_uri.file",
                },
            ),
            (json!({"type": "generic", "claims": {"sub": "x"}}), TrustError::Generic),
            (
                json!({"type": "github", "claims": {"repository": "a/b", "workflow_ref": {"file": "r.yml"}}, "permissions": ["createStagedPackage"]}),
                TrustError::Permissions,
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(TrustRule::parse_npm(&body), Err(expected), "{body}");
        }
        assert_eq!(TrustRule::parse_npm_body(&json!("x")), Err(TrustError::Shape));
        assert_eq!(TrustRule::parse_npm_body(&json!([])), Err(TrustError::Shape));
    }

    #[test]
    fn github_claims_match_by_repository_workflow_file_and_environment() {
        let rule = TrustRule {
            kind: PublisherKind::Github,
            project: Some("Acme/Lib".into()),
            file: Some("release.yml".into()),
            environment: Some("prod".into()),
            issuer: None,
            claims: BTreeMap::new(),
        };
        assert_eq!(
            rule.check(&github_claims("acme/lib", "release.yml", Some("prod"))),
            Ok(())
        );
        let wrong_workflow = rule
            .check(&github_claims("acme/lib", "ci.yml", Some("prod")))
            .expect_err("workflow");
        assert_eq!(wrong_workflow.claim, "the workflow file of workflow_ref");
        assert_eq!(wrong_workflow.actual, "ci.yml");
        let wrong_env = rule
            .check(&github_claims("acme/lib", "release.yml", Some("dev")))
            .expect_err("env");
        assert_eq!(
            wrong_env.to_string(),
            "environment is \"dev\", the trust configuration expects \"prod\""
        );
        assert!(rule.check(&github_claims("acme/lib", "release.yml", None)).is_err());
        assert!(
            rule.check(&github_claims("evil/lib", "release.yml", Some("prod")))
                .is_err()
        );
    }

    #[test]
    fn gitlab_and_generic_claims_match_their_own_fields() {
        let gitlab = TrustRule::parse_npm(&json!({"type": "gitlab", "claims": {"project_path": "group/sub/proj",
                                                  "ci_config_ref_uri": {"file": ".gitlab-ci.yml"}}}))
        .expect("gitlab");
        let claims = json!({"project_path": "group/sub/proj",
                            "ci_config_ref_uri": "gitlab.com/group/sub/proj//.gitlab-ci.yml@refs/heads/main",
                            "pipeline_id": 99, "sha": "abc"});
        let claims = claims.as_object().cloned().unwrap_or_default();
        assert_eq!(gitlab.check(&claims), Ok(()));
        let by = PublishedBy::from_claims(PublisherKind::Gitlab, "3", &claims);
        assert_eq!(by.run_id.as_deref(), Some("99"));
        assert_eq!(by.workflow.as_deref(), Some(".gitlab-ci.yml"));
        let generic =
            TrustRule::parse_npm(&json!({"type": "generic", "issuer": "corp", "claims": {"sub": "repo:acme/lib"}}))
                .expect("generic");
        assert!(generic.check(&claims).is_err());
        let mut sub = Map::new();
        sub.insert("sub".into(), json!("repo:acme/lib"));
        assert_eq!(generic.check(&sub), Ok(()));
    }

    #[test]
    fn a_credential_that_is_no_jwt_says_why() {
        for (jwt, expected) in [
            ("abc", JwtShapeError::Parts),
            ("a.b.c.d", JwtShapeError::Parts),
            ("!!.e30.sig", JwtShapeError::Base64("header")),
            ("e30.bm90IGpzb24.sig", JwtShapeError::Json("payload")),
        ] {
            assert_eq!(jwt_parts(jwt), Err(expected), "{jwt}");
        }
        let (header, claims) = jwt_parts("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.").expect("parts");
        assert_eq!(
            (header["alg"].as_str(), claims["iss"].as_str()),
            (Some("none"), Some("x"))
        );
    }

    #[test]
    fn the_publisher_is_written_as_npm_writes_it_with_the_run() {
        let by = PublishedBy::from_claims(
            PublisherKind::Github,
            "5",
            &github_claims("acme/lib", "release.yml", None),
        );
        let user = by.npm_user();
        assert_eq!(user["name"], "GitHub Actions");
        assert_eq!(user["trustedPublisher"]["id"], "github");
        assert_eq!(user["trustedPublisher"]["oidcConfigId"], "5");
        assert_eq!(user["trustedPublisher"]["repository"], "acme/lib");
        assert_eq!(user["trustedPublisher"]["workflow"], "release.yml");
        assert_eq!(user["trustedPublisher"]["ref"], "refs/heads/main");
        assert_eq!(user["trustedPublisher"]["sha"], "0123abc");
        assert_eq!(user["trustedPublisher"]["run_id"], "42");
        assert_eq!(workflow_file("o/r/.github/workflows/a.yml"), Some("a.yml".into()));
        assert_eq!(ci_config_file("gitlab.com/g/p"), None);
    }
}
