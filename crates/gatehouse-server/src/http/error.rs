//! The one place errors become HTTP responses: `{"error": "...", "message": "..."}`
//! (npm prints `error`; other tools read `message`), and for the admin API the same
//! as `application/problem+json` ([`Problem`]). Internal causes are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use gatehouse_npm::publish::PublishError;
use gatehouse_npm::route::RouteError;
use gatehouse_store::StoreError;
use gatehouse_store::blobs::BlobError;

use crate::access::AccessError;
use crate::admission::{AdmissionError, PolicyRefusal};
use crate::auth::AuthError;
use crate::packument_cache::CacheError;
use crate::services::{ExchangeError, ServiceError};
use crate::upstream::pull::PullError;
use crate::upstream::push::PushError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// Missing or invalid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// A wrong or missing password where one was asked for (login, token creation, Basic
    /// credentials). Answered with a `Basic` challenge: npm then says "Incorrect or missing
    /// password" instead of blaming the saved token.
    #[error("{0}")]
    WrongPassword(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(u64),
    /// The request (its body) arrived too slowly; the connection is closed after the answer.
    #[error("{0}")]
    RequestTimeout(String),
    #[error("method not allowed here")]
    MethodNotAllowed,
    #[error("{0}")]
    TooManyRequests(String),
    /// An upstream failed and nothing usable is stored.
    #[error("{0}")]
    BadGateway(String),
    /// The registry's policy withholds what was asked for (403, with the rule and
    /// the reason in the body and in `npm-notice`, which npm prints).
    #[error("{}", .0.message)]
    Policy(PolicyRefusal),
    /// A store (`part`: the database, the blob store) cannot be reached right now; the
    /// cause is logged, the client is told to retry (503 with `Retry-After`).
    #[error("the {part} is unavailable right now; try again shortly (the server's log has the cause)")]
    Unavailable {
        part: &'static str,
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Something broke on our side; the cause is logged, the client sees a generic message.
    #[error("internal error")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn not_found() -> Self {
        ApiError::NotFound("Not found".into())
    }

    /// A refusal whose reason is the error's message (a name, version or range that
    /// doesn't parse).
    pub fn bad_request(reason: impl std::fmt::Display) -> Self {
        ApiError::BadRequest(reason.to_string())
    }

    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ApiError::Internal(cause.into())
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::WrongPassword(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Policy(_) => StatusCode::FORBIDDEN,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) => tracing::error!(error = %Chain(cause.as_ref()), "request failed"),
            ApiError::Unavailable { part, cause } => {
                tracing::error!(part, error = %Chain(cause.as_ref()), "request failed: a store is unavailable");
            }
            _ => {}
        }
        let message = self.to_string();
        let body = match &self {
            ApiError::Policy(refusal) => json!({
                "error": message,
                "message": message,
                "code": "EPOLICY",
                "rule": refusal.rule.as_str(),
                "decision": refusal.verdict.as_str(),
            }),
            _ => json!({ "error": message, "message": message }),
        };
        let mut response = (self.status(), axum::Json(body)).into_response();
        if let ApiError::Policy(refusal) = &self {
            let headers = response.headers_mut();
            headers.insert("npm-notice", header_text(&refusal.message));
            headers.insert(
                "x-gatehouse-decision",
                HeaderValue::from_static(refusal.verdict.as_str()),
            );
            headers.insert("x-gatehouse-rule", HeaderValue::from_static(refusal.rule.as_str()));
        }
        if matches!(self, ApiError::RequestTimeout(_)) {
            // The rest of the body is not read: the connection can't carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if matches!(self, ApiError::TooManyRequests(_)) {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(crate::auth::FAILURE_WINDOW.as_secs()),
            );
        }
        if matches!(self, ApiError::Unavailable { .. }) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        // npm turns `Bearer` into "your authentication token seems to be invalid … npm login",
        // and `Basic` into "Incorrect or missing password".
        let challenge = match &self {
            ApiError::Unauthorized(_) => Some("Bearer realm=\"gatehouse\""),
            ApiError::WrongPassword(_) => Some("Basic realm=\"gatehouse\""),
            _ => None,
        };
        if let Some(challenge) = challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

/// An admin API error: RFC 9457 `application/problem+json` (`type`, `title`, `status`,
/// `detail`), with `error` kept as the registry routes have it, and the same headers.
#[derive(Debug)]
pub struct Problem(pub ApiError);

pub type ProblemResult<T> = Result<T, Problem>;

impl<E: Into<ApiError>> From<E> for Problem {
    fn from(e: E) -> Self {
        Problem(e.into())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let detail = match &self.0 {
            ApiError::Internal(_) => "internal error; the server's log has the cause".to_owned(),
            other => other.to_string(),
        };
        let mut body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
            "error": detail,
        });
        if let ApiError::Policy(refusal) = &self.0 {
            body["rule"] = json!(refusal.rule.as_str());
            body["decision"] = json!(refusal.verdict.as_str());
        }
        // The registry routes' answer, for its status and headers (and its log line).
        let mut response = self.0.into_response();
        *response.body_mut() = axum::body::Body::from(body.to_string());
        let headers = response.headers_mut();
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

/// Text for a header a person reads (`npm-notice`): npm prints it verbatim, without
/// decoding, so it is kept to printable ASCII.
pub fn header_text(text: &str) -> HeaderValue {
    let ascii: String = text
        .chars()
        .map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '?' })
        .take(2000)
        .collect();
    HeaderValue::from_str(&ascii).unwrap_or_else(|_| HeaderValue::from_static("refused by the registry's policy"))
}

/// An error and its sources, for the log: `a: b: c`.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found(),
            StoreError::Stale => {
                ApiError::Conflict("the package changed since you read it; fetch it again and retry".into())
            }
            StoreError::Conflict(what) => ApiError::Conflict(what.to_string()),
            StoreError::Unavailable(cause) => ApiError::Unavailable {
                part: "database",
                cause,
            },
            other => ApiError::internal(other),
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Journal(store) => store.into(),
            // The object store refused or failed: its outage, not a bug of ours.
            e @ BlobError::Backend { .. } => ApiError::Unavailable {
                part: "blob store",
                cause: Box::new(e),
            },
            e => ApiError::internal(e),
        }
    }
}

impl From<&AuthError> for ApiError {
    fn from(e: &AuthError) -> Self {
        match e {
            AuthError::Store(store) => ApiError::internal(store.to_string()),
            AuthError::AddressRefused(_) | AuthError::UserDisabled(_) => ApiError::Forbidden(e.to_string()),
            AuthError::RateLimited => ApiError::TooManyRequests(e.to_string()),
            AuthError::BadPassword => ApiError::WrongPassword(e.to_string()),
            other => ApiError::Unauthorized(other.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Store(e) => e.into(),
            other => ApiError::from(&other),
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::LoginRequired { .. } | AccessError::AdminLoginRequired => {
                ApiError::Unauthorized(e.to_string())
            }
            _ => ApiError::Forbidden(e.to_string()),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(message) => ApiError::BadRequest(message),
            ServiceError::NotFound(message) => ApiError::NotFound(message),
            ServiceError::Conflict(message) => ApiError::Conflict(message),
            ServiceError::Password(e) => ApiError::BadRequest(e.to_string()),
            ServiceError::Store(e) => e.into(),
        }
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::NotFound => ApiError::not_found(),
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<AdmissionError> for ApiError {
    fn from(e: AdmissionError) -> Self {
        match e {
            AdmissionError::Refused(refusal) => ApiError::BadRequest(refusal.to_string()),
            AdmissionError::Policy(refusal) => ApiError::Policy(refusal),
            // npm's own wording and status (403) for a republish.
            AdmissionError::VersionExists(_) | AdmissionError::NameTaken(_) => ApiError::Forbidden(e.to_string()),
            AdmissionError::Store(e) => e.into(),
            AdmissionError::Blob(e) => e.into(),
            AdmissionError::Provenance(_) => ApiError::BadRequest(e.to_string()),
        }
    }
}

impl From<CacheError> for ApiError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::Absent => ApiError::not_found(),
            CacheError::Frozen(_) => ApiError::NotFound(e.to_string()),
            CacheError::Upstream(why) => ApiError::BadGateway(why),
            other => ApiError::internal(other),
        }
    }
}

impl From<PullError> for ApiError {
    fn from(e: PullError) -> Self {
        match e {
            PullError::NotFound => ApiError::not_found(),
            PullError::Policy(refusal) => ApiError::Policy(refusal),
            PullError::Internal(cause) => ApiError::internal(cause.to_string()),
            other => ApiError::BadGateway(other.to_string()),
        }
    }
}

impl From<PushError> for ApiError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::NotFound(m) => ApiError::NotFound(m),
            PushError::Invalid(m) => ApiError::BadRequest(m),
            PushError::Refused(_) => ApiError::Conflict(e.to_string()),
            PushError::Upstream(u) => ApiError::BadGateway(u.to_string()),
            PushError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<ExchangeError> for ApiError {
    fn from(e: ExchangeError) -> Self {
        use crate::oidc::OidcError;
        match e {
            ExchangeError::Oidc(e @ OidcError::Audience { .. }) => ApiError::BadRequest(e.to_string()),
            ExchangeError::Oidc(e @ OidcError::Keys { .. }) => ApiError::BadGateway(e.to_string()),
            ExchangeError::Oidc(e) => ApiError::Unauthorized(e.to_string()),
            ExchangeError::NoMatch(message) => ApiError::NotFound(message),
            ExchangeError::Ambiguous(message) => ApiError::Conflict(message),
            ExchangeError::Service(e) => e.into(),
        }
    }
}
