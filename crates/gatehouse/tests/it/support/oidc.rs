//! A fake OIDC issuer for trusted publishing: its own keys (`tests/fixtures/oidc`), a
//! discovery document and a JWKS, and GitHub Actions' ID-token endpoint
//! (`ACTIONS_ID_TOKEN_REQUEST_URL`), so the real npm gets its token as it does in CI.
//! It can rotate its keys, go down, and serve garbage. Loopback only.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::{TestServer, http};

/// The bearer credential the fake Actions endpoint wants (`ACTIONS_ID_TOKEN_REQUEST_TOKEN`).
pub const ACTIONS_REQUEST_TOKEN: &str = "actions-request-token";

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/oidc")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

#[derive(Clone)]
struct Key {
    kid: &'static str,
    algorithm: Algorithm,
    encoding: EncodingKey,
}

impl Key {
    fn load(kid: &'static str, file: &str, algorithm: Algorithm) -> Key {
        let pem = fixture(file);
        let encoding = match algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_rsa_pem(&pem),
        }
        .expect("fixture key");
        Key {
            kid,
            algorithm,
            encoding,
        }
    }

    fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.algorithm).expect("jwk");
        jwk.common.key_id = Some(self.kid.to_owned());
        jwk
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerMode {
    Normal,
    /// Connections are closed without an answer.
    Down,
    /// The discovery document and the JWKS are not JSON.
    Garbage,
}

struct State {
    /// Published in the JWKS; the first signs new tokens.
    published: Vec<Key>,
    mode: IssuerMode,
    jwks_hits: usize,
    /// What the Actions endpoint puts in the tokens it hands out (its `aud` is the
    /// audience asked for).
    actions_claims: Value,
}

pub struct FakeIssuer {
    /// `http://127.0.0.1:PORT`, the `iss` of its tokens.
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FakeIssuer {
    pub fn start() -> FakeIssuer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake issuer");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State {
            published: vec![
                Key::load("rsa-1", "rsa-1.pem", Algorithm::RS256),
                Key::load("ec-1", "ec-1.pem", Algorithm::ES256),
            ],
            mode: IssuerMode::Normal,
            jwks_hits: 0,
            actions_claims: json!({}),
        }));
        let (shared, base) = (state.clone(), url.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (state, base) = (shared.clone(), base.clone());
                std::thread::spawn(move || serve(stream, &state, &base));
            }
        });
        FakeIssuer { url, state }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A token with `claims`, signed with the current key (RS256).
    pub fn token(&self, claims: &Value) -> String {
        let key = self.state().published[0].clone();
        sign(&key, Some(key.kid), claims)
    }

    /// A token signed with the EC key (ES256).
    pub fn token_es256(&self, claims: &Value) -> String {
        let key = Key::load("ec-1", "ec-1.pem", Algorithm::ES256);
        sign(&key, Some("ec-1"), claims)
    }

    /// A token signed with a key this issuer never published.
    pub fn token_with_unknown_key(&self, claims: &Value) -> String {
        let key = Key::load("rsa-2", "rsa-2.pem", Algorithm::RS256);
        sign(&key, Some("never-published"), claims)
    }

    /// Publishes a new key (`rsa-2`) instead of the old ones, and signs with it.
    pub fn rotate(&self) {
        self.state().published = vec![Key::load("rsa-2", "rsa-2.pem", Algorithm::RS256)];
    }

    pub fn set_mode(&self, mode: IssuerMode) {
        self.state().mode = mode;
    }

    pub fn jwks_hits(&self) -> usize {
        self.state().jwks_hits
    }

    /// What the Actions ID-token endpoint signs (besides the audience asked for).
    pub fn set_actions_claims(&self, claims: Value) {
        self.state().actions_claims = claims;
    }

    /// `ACTIONS_ID_TOKEN_REQUEST_URL` (npm appends `&audience=…`).
    pub fn actions_request_url(&self) -> String {
        format!("{}/actions-token?api-version=2.0", self.url)
    }

    /// The claims GitHub Actions puts in a job's ID token.
    pub fn github_claims(&self, repository: &str, workflow: &str, audience: &str) -> Value {
        let now = now();
        json!({
            "iss": self.url, "aud": audience, "iat": now, "nbf": now - 5, "exp": now + 300,
            "sub": format!("repo:{repository}:ref:refs/heads/main"),
            "repository": repository, "repository_owner": repository.split('/').next(),
            "repository_visibility": "private",
            "workflow_ref": format!("{repository}/.github/workflows/{workflow}@refs/heads/main"),
            "ref": "refs/heads/main", "sha": "5f1c2a9e0d4b7c3a", "run_id": "4242", "run_attempt": "1",
        })
    }

    /// The claims GitLab CI puts in a job's ID token (`id_tokens: NPM_ID_TOKEN`).
    pub fn gitlab_claims(&self, project: &str, config_file: &str, audience: &str) -> Value {
        let now = now();
        json!({
            "iss": self.url, "aud": audience, "iat": now, "nbf": now - 5, "exp": now + 300,
            "project_path": project, "project_visibility": "private",
            "ci_config_ref_uri": format!("gitlab.example.com/{project}//{config_file}@refs/heads/main"),
            "ref": "main", "sha": "a1b2c3d4", "pipeline_id": 777,
        })
    }
}

/// A signed JWT; `kid: None` leaves the key id out.
fn sign(key: &Key, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(key.algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign")
}

/// A token whose header says `alg` and whose signature is `signature` (forgeries).
pub fn forged(alg: &str, claims: &Value, signature: &str) -> String {
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{signature}",
        b64(&json!({"alg": alg, "typ": "JWT", "kid": "rsa-1"})),
        b64(claims)
    )
}

/// An HS256 token whose HMAC secret is the issuer's public RSA key (the classic
/// algorithm-confusion forgery).
pub fn hs256_with_public_key(claims: &Value) -> String {
    let secret = fixture("rsa-1.pub.pem");
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(&secret).expect("hmac key")).expect("sign")
}

/// `jwt` with its claims replaced and its signature kept.
pub fn tampered(jwt: &str, claims: &Value) -> String {
    use base64::Engine as _;
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    parts.join(".")
}

fn serve(mut stream: TcpStream, state: &Mutex<State>, base: &str) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request).into_owned();
    let target = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mode = state.lock().unwrap_or_else(|e| e.into_inner()).mode;
    if mode == IssuerMode::Down {
        return;
    }
    let (status, body) = match path {
        "/.well-known/openid-configuration" if mode == IssuerMode::Garbage => ("200 OK", "<html>".to_owned()),
        "/.well-known/openid-configuration" => (
            "200 OK",
            json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}).to_string(),
        ),
        "/jwks" => {
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            state.jwks_hits += 1;
            let set = JwkSet {
                keys: state.published.iter().map(Key::jwk).collect(),
            };
            ("200 OK", serde_json::to_string(&set).expect("jwks"))
        }
        "/actions-token" => {
            let authorized = text
                .lines()
                .any(|l| l.eq_ignore_ascii_case(&format!("authorization: Bearer {ACTIONS_REQUEST_TOKEN}")));
            let audience = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("audience="))
                .map(|a| percent_encoding::percent_decode_str(a).decode_utf8_lossy().into_owned());
            match (authorized, audience) {
                (true, Some(audience)) => {
                    let (key, mut claims) = {
                        let state = state.lock().unwrap_or_else(|e| e.into_inner());
                        (state.published[0].clone(), state.actions_claims.clone())
                    };
                    if let Some(obj) = claims.as_object_mut() {
                        obj.insert("aud".into(), json!(audience));
                    }
                    (
                        "200 OK",
                        json!({"value": sign(&key, Some(key.kid), &claims)}).to_string(),
                    )
                }
                _ => ("401 Unauthorized", json!({"message": "bad request token"}).to_string()),
            }
        }
        _ => ("404 Not Found", "{}".to_owned()),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

// Trusted publishing's steps, as the tests take them.

/// What npm asks GitHub for when the registry is on 127.0.0.1 (hostname, no port).
pub const AUDIENCE: &str = "npm:127.0.0.1";
/// The password of `alice`, the maintainer who trusts CI in these tests.
pub const ALICE_PASSWORD: &str = "alice-password-1";

/// Alice, who may publish to `default`, and her token.
pub fn alice(server: &TestServer) -> String {
    server.add_user("alice", ALICE_PASSWORD);
    server.cli_ok(&["registry", "grant", "default", "alice", "publish"]);
    server.login("default", "alice", ALICE_PASSWORD)
}

/// Trusts `repository`'s `release.yml` to publish `name` in `default` (alice maintains it).
pub fn trust_github(server: &TestServer, name: &str, repository: &str, extra: &[&str]) {
    let mut args = vec![
        "trust",
        "add",
        "default",
        name,
        "--github",
        repository,
        "--file",
        "release.yml",
        "--owner",
        "alice",
    ];
    args.extend_from_slice(extra);
    server.cli_ok(&args);
}

/// The exchange's URL under `registry`, or at the host root.
pub fn exchange_url(server: &TestServer, registry: Option<&str>, name: &str) -> String {
    let base = match registry {
        Some(r) => server.registry_url(r),
        None => format!("{}/", server.base),
    };
    format!(
        "{base}-/npm/v1/oidc/token/exchange/package/{}",
        name.replace('/', "%2f")
    )
}

/// The exchange's status and JSON body.
pub fn exchange(server: &TestServer, registry: Option<&str>, name: &str, jwt: &str) -> (u16, Value) {
    let response = http()
        .post(exchange_url(server, registry, name))
        .bearer_auth(jwt)
        .send()
        .expect("exchange");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// The token a successful exchange answers.
pub fn exchanged_token(server: &TestServer, registry: Option<&str>, name: &str, jwt: &str) -> String {
    let (status, body) = exchange(server, registry, name, jwt);
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().expect("token").to_owned()
}
