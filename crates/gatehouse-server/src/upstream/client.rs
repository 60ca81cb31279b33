//! HTTP to remote registries: timeouts for connecting, the first byte and the whole
//! transfer, size caps, no redirects unless configured, credentials per upstream
//! (never the client's).

use std::time::Duration;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use reqwest::header::{self, HeaderMap, HeaderValue};

use crate::config::UpstreamSettings;

/// A version's attestations are a few bundles of a few kilobytes each.
const MAX_ATTESTATIONS_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {0} timed out")]
    Timeout(String),
    #[error("upstream {0} is unreachable: {1}")]
    Unreachable(String, String),
    #[error("upstream {0} answered HTTP {1}")]
    Status(String, u16),
    #[error("upstream {0} redirected to {1}; redirects are not followed")]
    Redirect(String, String),
    #[error("upstream {0} sent more than {1} bytes")]
    TooLarge(String, u64),
    #[error("upstream {0} sent an invalid response: {1}")]
    Invalid(String, String),
    #[error("upstream {0} is failing; not asking again for a while")]
    CircuitOpen(String),
}

/// Credentials an upstream is called with.
#[derive(Debug, Clone, Default)]
pub enum UpstreamAuth {
    #[default]
    None,
    Bearer(String),
    /// `user:password`
    Basic(String),
}

pub enum Fetched {
    Body {
        body: Bytes,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    NotModified,
    NotFound,
}

#[derive(Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    settings: UpstreamSettings,
}

impl UpstreamClient {
    pub fn new(settings: &UpstreamSettings) -> Result<Self, reqwest::Error> {
        let redirects = if settings.follow_redirects {
            reqwest::redirect::Policy::limited(5)
        } else {
            reqwest::redirect::Policy::none()
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .redirect(redirects)
            .pool_max_idle_per_host(32)
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(UpstreamClient {
            http,
            settings: settings.clone(),
        })
    }

    /// GET a packument (full, so `time` is there), revalidating with the stored validators.
    pub async fn packument(
        &self,
        url: &str,
        auth: &UpstreamAuth,
        etag: Option<&str>,
        last_modified: Option<&str>,
    ) -> Result<Fetched, UpstreamError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(v) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
            headers.insert(header::IF_NONE_MATCH, v);
        }
        if let Some(v) = last_modified.and_then(|e| HeaderValue::from_str(e).ok()) {
            headers.insert(header::IF_MODIFIED_SINCE, v);
        }
        let response = self.send(url, auth, headers).await?;
        match response.status().as_u16() {
            304 => Ok(Fetched::NotModified),
            404 | 410 => Ok(Fetched::NotFound),
            200 => {
                let etag = header_string(response.headers(), header::ETAG);
                let last_modified = header_string(response.headers(), header::LAST_MODIFIED);
                let body = self.read_body(url, response, self.settings.max_packument_bytes).await?;
                Ok(Fetched::Body {
                    body,
                    etag,
                    last_modified,
                })
            }
            _ => Err(status_error(url, &response)),
        }
    }

    /// GET a version's attestations (`-/npm/v1/attestations/{name}@{version}`), which
    /// are kilobytes: `None` when the upstream has none.
    pub async fn attestations(&self, url: &str, auth: &UpstreamAuth) -> Result<Option<Bytes>, UpstreamError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let response = self.send(url, auth, headers).await?;
        match response.status().as_u16() {
            200 => Ok(Some(self.read_body(url, response, MAX_ATTESTATIONS_BYTES).await?)),
            404 | 410 => Ok(None),
            _ => Err(status_error(url, &response)),
        }
    }

    /// GET a tarball. The body is read piece by piece through [`Body`], within the size
    /// and transfer-time limits.
    pub async fn tarball(&self, url: &str, auth: &UpstreamAuth) -> Result<Body, UpstreamError> {
        let response = self.send(url, auth, HeaderMap::new()).await?;
        if response.status().as_u16() != 200 {
            return Err(status_error(url, &response));
        }
        self.body(url, response, self.settings.max_tarball_bytes)
    }

    /// PUT a publish body to a remote registry (pushing a version to it).
    pub async fn publish(&self, url: &str, auth: &UpstreamAuth, body: &serde_json::Value) -> Result<(), UpstreamError> {
        let request = authorize(self.http.put(url).json(body), auth);
        let transfer = Duration::from_millis(self.settings.transfer_timeout_ms);
        let response = tokio::time::timeout(transfer, request.send())
            .await
            .map_err(|_| UpstreamError::Timeout(url.to_owned()))
            .and_then(|sent| sent.map_err(|e| UpstreamError::Unreachable(url.to_owned(), root_cause(&e))));
        crate::metrics::global().upstream(outcome(&response));
        let response = response?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(status_error(url, &response))
        }
    }

    async fn send(
        &self,
        url: &str,
        auth: &UpstreamAuth,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, UpstreamError> {
        let request = authorize(self.http.get(url).headers(headers), auth);
        let first_byte = Duration::from_millis(self.settings.first_byte_timeout_ms);
        let response = tokio::time::timeout(first_byte, request.send())
            .await
            .map_err(|_| UpstreamError::Timeout(url.to_owned()))
            .and_then(|sent| {
                sent.map_err(|e| {
                    if e.is_timeout() {
                        UpstreamError::Timeout(url.to_owned())
                    } else {
                        UpstreamError::Unreachable(url.to_owned(), root_cause(&e))
                    }
                })
            });
        crate::metrics::global().upstream(outcome(&response));
        let response = response?;
        if response.status().is_redirection() {
            let to = header_string(response.headers(), header::LOCATION).unwrap_or_default();
            return Err(UpstreamError::Redirect(url.to_owned(), to));
        }
        Ok(response)
    }

    /// Reads a whole body, within the limits.
    async fn read_body(&self, url: &str, response: reqwest::Response, limit: u64) -> Result<Bytes, UpstreamError> {
        let mut body = self.body(url, response, limit)?;
        let mut bytes = BytesMut::with_capacity(body.len.map_or(0, |len| len as usize));
        while let Some(chunk) = body.chunk().await? {
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes.freeze())
    }

    fn body(&self, url: &str, response: reqwest::Response, limit: u64) -> Result<Body, UpstreamError> {
        let len = response.content_length();
        if len.is_some_and(|len| len > limit) {
            return Err(UpstreamError::TooLarge(url.to_owned(), limit));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.settings.transfer_timeout_ms);
        Ok(Body {
            url: url.to_owned(),
            len,
            response,
            limit,
            received: 0,
            deadline,
        })
    }
}

/// A response body read chunk by chunk. It fails as soon as it passes its size limit or
/// its transfer deadline: a huge or endless response never fills memory or hangs a pull.
pub struct Body {
    url: String,
    /// The length the upstream announced, if it did.
    pub len: Option<u64>,
    response: reqwest::Response,
    limit: u64,
    received: u64,
    deadline: tokio::time::Instant,
}

impl Body {
    /// The next piece, or `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        let chunk = tokio::time::timeout_at(self.deadline, self.response.chunk())
            .await
            .map_err(|_| UpstreamError::Timeout(self.url.clone()))?
            .map_err(|e| UpstreamError::Unreachable(self.url.clone(), root_cause(&e)))?;
        if let Some(chunk) = &chunk {
            self.received += chunk.len() as u64;
            if self.received > self.limit {
                return Err(UpstreamError::TooLarge(self.url.clone(), self.limit));
            }
        }
        Ok(chunk)
    }
}

fn authorize(request: reqwest::RequestBuilder, auth: &UpstreamAuth) -> reqwest::RequestBuilder {
    match auth {
        UpstreamAuth::None => request,
        UpstreamAuth::Bearer(token) => request.bearer_auth(token),
        UpstreamAuth::Basic(pair) => request.header(
            header::AUTHORIZATION,
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)),
        ),
    }
}

fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn status_error(url: &str, response: &reqwest::Response) -> UpstreamError {
    UpstreamError::Status(url.to_owned(), response.status().as_u16())
}

/// The innermost error text (reqwest's own message says little: "error sending request").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// An upstream answer as metrics count it.
fn outcome(response: &Result<reqwest::Response, UpstreamError>) -> &'static str {
    match response {
        Ok(response) => match response.status().as_u16() {
            304 => "304",
            404 => "404",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        },
        Err(UpstreamError::Timeout(_)) => "timeout",
        Err(_) => "error",
    }
}
