//! Who is calling, worked out once per request and shared by every surface: the
//! npm routes, the admin API (and the web app next).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use tokio::time::Instant;

use super::error::ApiError;
use crate::app::App;
use crate::auth::cidr::Cidr;
use crate::auth::{AuthError, Principal};
use crate::config::Limits;

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

/// A web app session, accepted in place of `Authorization` where a surface allows it
/// (only the admin API: `http::api_session` puts it in the request's extensions).
#[derive(Clone)]
pub struct SessionCaller(pub Principal);

/// The caller, as the credentials sent with the request (`Authorization`: a token,
/// Basic user:password or user:token) say, or a [`SessionCaller`]. Never rejects: each
/// surface decides what a missing or refused credential means (a login route ignores
/// a stale one).
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
        if authorization.is_none()
            && let Some(SessionCaller(principal)) = parts.extensions.get::<SessionCaller>()
        {
            return Ok(Caller {
                ip,
                credentials: Ok(Some(principal.clone())),
            });
        }
        let credentials = app.auth.authenticate(authorization, ip).await;
        Ok(Caller { ip, credentials })
    }
}

/// A request body read as [`read_body`] reads it: within `[limits]`.
pub struct LimitedBody(pub Bytes);

impl FromRequest<Arc<App>> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        read_body(&parts.headers, body, &app.config.limits)
            .await
            .map(LimitedBody)
    }
}

/// Reads a request body up to `max_body_bytes`, refusing early on a declared
/// `Content-Length` that is already too big; never buffers more than the limit.
/// A body that pauses longer than `body_timeout` between two pieces, or takes longer
/// than `body_total_timeout` in all, is refused with 408 (nothing was stored: the
/// handler has not seen it).
pub async fn read_body(headers: &HeaderMap, mut body: axum::body::Body, limits: &Limits) -> Result<Bytes, ApiError> {
    let limit = limits.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let all_by = Instant::now() + limits.body_total_timeout();
    let timer = tokio::time::sleep_until(all_by);
    tokio::pin!(timer);
    // One piece is kept as it came (most bodies); more are joined. Nothing is reserved
    // from the declared length: a client could declare much and send little.
    let mut single: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    let mut len = 0u64;
    loop {
        let next_by = (Instant::now() + limits.body_timeout()).min(all_by);
        timer.as_mut().reset(next_by);
        let frame = tokio::select! {
            biased;
            frame = body.frame() => frame,
            () = &mut timer => return Err(body_too_slow(limits, next_by == all_by)),
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => return Err(ApiError::BadRequest(format!("could not read the request body: {e}"))),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Trailers.
                Err(_) => continue,
            },
        };
        len += data.len() as u64;
        if len > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        match single.take() {
            None if joined.is_empty() => single = Some(data),
            first => {
                if let Some(first) = first {
                    joined.extend_from_slice(&first);
                }
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(single.unwrap_or_else(|| joined.freeze()))
}

fn body_too_slow(limits: &Limits, in_all: bool) -> ApiError {
    ApiError::RequestTimeout(if in_all {
        format!(
            "the request body took longer than {} to arrive (limits.body_total_timeout_ms), so nothing was stored; send it again over a faster connection, or ask the registry's administrator to raise the limit",
            seconds(limits.body_total_timeout())
        )
    } else {
        format!(
            "the request body stopped arriving: nothing came for {} (limits.body_timeout_ms), so nothing was stored; check the network (or a proxy) between you and the registry and send it again",
            seconds(limits.body_timeout())
        )
    })
}

fn seconds(duration: std::time::Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}
