//! `npm audit` answered from the local advisory database: the bulk endpoint (npm 11,
//! yarn 4, pnpm 11) and the quick/full one (older clients). A registry must never
//! claim safety it has no data for: with an empty or stale database, the answer says
//! so in `npm-notice` (npm prints it) and in the report's metadata.

use std::collections::HashMap;
use std::io::Read as _;

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flate2::read::GzDecoder;
use gatehouse_policy::advisory::Advisory;
use gatehouse_policy::audit;
use serde_json::{Value, json};

use super::Ctx;
use crate::http::error::{ApiError, ApiResult, header_text};

/// An audit body inflates to at most this (a lockfile's tree is large, not this large).
const MAX_INFLATED: u64 = 64 * 1024 * 1024;

pub async fn bulk(ctx: &Ctx, headers: &HeaderMap, body: Bytes) -> ApiResult<Response> {
    ctx.require_read()?;
    let body = inflated(headers, body).await?;
    let request = audit::bulk_request(&body).map_err(ApiError::bad_request)?;
    let advisories = lookup(ctx, request.keys().map(String::as_str)).await?;
    let report = audit::bulk_report(&request, |name| advisories.get(name).cloned().unwrap_or_default());
    respond(ctx, report, false).await
}

pub async fn quick(ctx: &Ctx, headers: &HeaderMap, body: Bytes) -> ApiResult<Response> {
    ctx.require_read()?;
    let body = inflated(headers, body).await?;
    let request = audit::quick_request(&body).map_err(ApiError::bad_request)?;
    let advisories = lookup(ctx, request.installed.iter().map(|i| i.name.as_str())).await?;
    let report = audit::quick_report(&request, |name| advisories.get(name).cloned().unwrap_or_default());
    respond(ctx, report, true).await
}

/// npm gzips audit bodies (`Content-Encoding: gzip`); inflated within a bound.
async fn inflated(headers: &HeaderMap, body: Bytes) -> ApiResult<Bytes> {
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"))
        || body.starts_with(&[0x1f, 0x8b]);
    if !gzipped {
        return Ok(body);
    }
    // Always off the runtime: a few KiB of gzip can inflate to the whole bound.
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        GzDecoder::new(body.as_ref())
            .take(MAX_INFLATED + 1)
            .read_to_end(&mut out)
            .map_err(|e| ApiError::BadRequest(format!("the audit request is not valid gzip: {e}")))?;
        if out.len() as u64 > MAX_INFLATED {
            return Err(ApiError::PayloadTooLarge(MAX_INFLATED));
        }
        Ok(Bytes::from(out))
    })
    .await
    .map_err(ApiError::internal)?
}

async fn lookup<'a>(ctx: &Ctx, names: impl Iterator<Item = &'a str>) -> ApiResult<HashMap<String, Vec<Advisory>>> {
    let mut found = HashMap::new();
    for name in names {
        if found.contains_key(name) {
            continue;
        }
        let advisories = ctx.app.firewall.advisories(name).await.map_err(ApiError::internal)?;
        found.insert(name.to_owned(), advisories);
    }
    Ok(found)
}

/// The report, with what the database's state means for it.
async fn respond(ctx: &Ctx, mut report: Value, with_metadata: bool) -> ApiResult<Response> {
    let freshness = ctx
        .app
        .firewall
        .advisory_freshness()
        .await
        .map_err(ApiError::internal)?;
    if with_metadata && let Some(metadata) = report.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert(
            "advisoryDatabase".into(),
            json!({
                "advisories": freshness.advisories,
                "lastImport": freshness.last_import.map(gatehouse_npm::packument::iso_time),
                "stale": freshness.notice.is_some(),
                "notice": freshness.notice,
            }),
        );
    }
    let mut response = axum::Json(report).into_response();
    if let Some(notice) = &freshness.notice {
        response.headers_mut().insert("npm-notice", header_text(notice));
    }
    Ok(response)
}
