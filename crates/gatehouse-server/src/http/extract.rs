//! Who is calling, worked out once per request and shared by every surface: the
//! npm routes, the admin API (and the web app next).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use super::error::ApiError;
use crate::app::App;
use crate::auth::cidr::Cidr;
use crate::auth::{AuthError, Principal};

/// The client's address: the peer, unless the peer is a trusted proxy (the
/// `trusted_proxies` setting), then the address it forwarded for.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<Arc<App>> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .ok_or_else(|| ApiError::internal("the server was started without peer addresses"))?;
        Ok(ClientIp(client_ip(&app.config.trusted_proxies, peer, &parts.headers)))
    }
}

/// The right-most address in `X-Forwarded-For` that is not itself a trusted proxy,
/// when the peer is one; the peer otherwise.
pub fn client_ip(trusted: &[Cidr], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => continue,
            Ok(ip) => return ip,
            // Garbage in the chain: don't trust anything left of it.
            Err(_) => return peer,
        }
    }
    peer
}

/// The caller, as the credentials sent with the request (`Authorization`: a token,
/// Basic user:password or user:token) say. Never rejects: each surface decides what
/// a missing or refused credential means (a login route ignores a stale one).
pub struct Caller {
    pub ip: IpAddr,
    /// `Ok(None)`: no credentials sent.
    pub credentials: Result<Option<Principal>, AuthError>,
}

impl Caller {
    /// The authenticated caller, if any; refused credentials are an error.
    pub fn principal(&self) -> Result<Option<&Principal>, ApiError> {
        match &self.credentials {
            Ok(principal) => Ok(principal.as_ref()),
            Err(e) => Err(ApiError::from(e)),
        }
    }
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, app).await?;
        // A header that is not text is malformed, not absent.
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("\u{0}"));
        let credentials = app.auth.authenticate(authorization, ip).await;
        Ok(Caller { ip, credentials })
    }
}

/// Reads a request body up to `limit` bytes, refusing early on a declared
/// `Content-Length` that is already too big; never buffers more than the limit.
pub async fn read_body(headers: &HeaderMap, body: axum::body::Body, limit: u64) -> Result<bytes::Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit_usize).await.map_err(|e| {
        if over_limit(&e) {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::BadRequest(format!("could not read the request body: {e}"))
        }
    })
}

/// Whether reading a body failed because it passed the limit (not a broken connection).
fn over_limit(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
}
