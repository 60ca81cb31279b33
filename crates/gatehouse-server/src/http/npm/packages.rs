//! Reading packages: packuments (full and abbreviated, with ETag/304 and gzip),
//! single versions, tarballs, collaborators and visibility.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_npm::name::PackageName;
use gatehouse_store::blobs::{BlobKey, ByteRange, Ranged};
use serde_json::{Value, json};

use super::Ctx;
use crate::http::error::{ApiError, ApiResult, header_text};
use crate::packument_cache::{self, Representation};
use crate::upstream::pull::Download;

const ABBREVIATED_TYPE: &str = "application/vnd.npm.install-v1+json";

/// npm's rule: the abbreviated form only when it is the first type asked for.
fn wants_abbreviated(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(|accept| accept.split(',').next())
        .is_some_and(|first| first.trim().starts_with(ABBREVIATED_TYPE))
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|enc| enc.trim().starts_with("gzip")))
}

fn http_date(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

fn not_modified(headers: &HeaderMap, etag: &str, last_modified: &str) -> bool {
    match headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        Some(tags) => tags.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        }),
        None => headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|since| since == last_modified),
    }
}

/// Says, in a header, that upstream data came from a stored copy (upstream down).
const STALE_HEADER: &str = "x-gatehouse-upstream";

/// npm prints this header's text (`npm notice …`), once per command.
const NPM_NOTICE: &str = "npm-notice";

pub async fn packument(ctx: &Ctx, name: &PackageName, headers: &HeaderMap, head: bool) -> ApiResult<Response> {
    ctx.require_read()?;
    let prepared = ctx.package(name).await?;
    let Some(documents) = prepared.documents.as_ref() else {
        // Every version withheld: said as a refusal, so every client shows why.
        return Err(match prepared.policy.withheld.values().next_back() {
            Some(withheld) => {
                let mut refusal = withheld.refusal.clone();
                refusal.message = format!("no version of {name} is served here. {}", refusal.message);
                ApiError::Policy(refusal)
            }
            None => ApiError::not_found(),
        });
    };
    let abbreviated = wants_abbreviated(headers);
    let (repr, content_type): (&Representation, &str) = if abbreviated {
        (&documents.abbreviated, ABBREVIATED_TYPE)
    } else {
        (&documents.full, "application/json")
    };
    let last_modified = http_date(prepared.modified_at);
    let cache_control = if ctx.registry.public_read {
        "public, max-age=0, must-revalidate"
    } else {
        "private, max-age=0, must-revalidate"
    };
    let mut builder = Response::builder()
        .header(header::ETAG, &repr.etag)
        .header(header::LAST_MODIFIED, &last_modified)
        .header(header::CACHE_CONTROL, cache_control)
        .header(header::VARY, "Accept, Accept-Encoding, Authorization");
    if prepared.stale {
        builder = builder.header(STALE_HEADER, "stale");
    }
    if let Some(notice) = &prepared.policy.notice {
        builder = builder.header(NPM_NOTICE, header_text(notice));
    }
    if not_modified(headers, &repr.etag, &last_modified) {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(ApiError::internal);
    }
    builder = builder.header(header::CONTENT_TYPE, content_type);
    let body = if accepts_gzip(headers) {
        builder = builder.header(header::CONTENT_ENCODING, "gzip");
        repr.gzip.clone()
    } else {
        ctx.app.packuments.identity(repr).await?
    };
    builder = builder.header(header::CONTENT_LENGTH, body.len());
    let body = if head { Body::empty() } else { Body::from(body) };
    builder.body(body).map_err(ApiError::internal)
}

/// `GET /{name}/{version|tag}`: one version manifest, as in the full packument.
pub async fn version(ctx: &Ctx, name: &PackageName, spec: &str) -> ApiResult<Response> {
    ctx.require_read()?;
    let prepared = ctx.package(name).await?;
    let version = prepared.dist_tags.get(spec).map_or(spec, String::as_str).to_owned();
    ctx.refuse_withheld(&prepared, &version)?;
    let manifest = packument_cache::version_manifest(prepared, version)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("version not found: {name}@{spec}")))?;
    Ok(axum::Json(manifest).into_response())
}

/// How long a presigned tarball URL (`[blobs] redirect`) works: long enough for the
/// client to follow the redirect, short enough that a leaked one soon stops working.
const REDIRECT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(300);

/// `GET /{name}/-/{file}.tgz`: from storage (or a presigned URL of the bucket), or
/// streamed while it is pulled from an upstream.
pub async fn tarball(
    ctx: &Ctx,
    name: &PackageName,
    file: &str,
    head: bool,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    ctx.require_read()?;
    let prepared = ctx.package(name).await?;
    let version = file
        .strip_prefix(name.basename())
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.strip_suffix(".tgz"))
        .ok_or_else(ApiError::not_found)?;
    ctx.refuse_withheld(&prepared, version)?;
    let download = match prepared.tarballs.get(version) {
        Some(blob) => Download::Held(blob.clone()),
        None if prepared.remote.contains_key(version) => {
            let pulls = &ctx.app.pulls;
            if head {
                Download::Held(pulls.ensure_local(&ctx.registry, name, version).await?)
            } else {
                pulls.download(&ctx.registry, name, version).await?
            }
        }
        None => return Err(ApiError::not_found()),
    };
    let cache_control = if ctx.registry.public_read {
        "public, max-age=31536000, immutable"
    } else {
        "private, max-age=31536000, immutable"
    };
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CACHE_CONTROL, cache_control);
    if let Some(warning) = prepared.policy.warnings.get(version) {
        builder = builder.header(NPM_NOTICE, header_text(warning));
    }
    match download {
        Download::Held(blob_ref) => {
            let key = BlobKey::parse_hex(&blob_ref.sha512_hex)?;
            if !head
                && ctx.app.config.tarball_redirects
                && let Some(url) = ctx.app.blobs.store().signed_url(&key, REDIRECT_LIFETIME).await?
            {
                // The bucket serves the bytes (clients check them against the
                // packument's integrity); the URL expires, so the answer is not cached.
                let mut redirect = Response::builder()
                    .status(StatusCode::TEMPORARY_REDIRECT)
                    .header(header::LOCATION, url)
                    .header(header::CACHE_CONTROL, "private, no-store");
                if let Some(warning) = prepared.policy.warnings.get(version) {
                    redirect = redirect.header(NPM_NOTICE, header_text(warning));
                }
                return redirect.body(Body::empty()).map_err(ApiError::internal);
            }
            let missing = || ApiError::internal(format!("blob {} of {name}@{version} is missing", blob_ref.sha512_hex));
            if !head && let Some(asked) = asked_range(headers, &key) {
                return match ctx.app.blobs.open_range(&key, asked).await?.ok_or_else(missing)? {
                    Ranged::Part { stream, range, total } => {
                        crate::metrics::global().tarball_served(stream.len);
                        builder
                            .status(StatusCode::PARTIAL_CONTENT)
                            .header(
                                header::CONTENT_RANGE,
                                format!("bytes {}-{}/{total}", range.start, range.end - 1),
                            )
                            .header(header::CONTENT_LENGTH, stream.len)
                            .header(header::ETAG, stream.etag)
                            .body(Body::from_stream(stream.body))
                            .map_err(ApiError::internal)
                    }
                    Ranged::Unsatisfiable { total } => builder
                        .status(StatusCode::RANGE_NOT_SATISFIABLE)
                        .header(header::CONTENT_RANGE, format!("bytes */{total}"))
                        .body(Body::empty())
                        .map_err(ApiError::internal),
                };
            }
            let blob = ctx.app.blobs.serve(&key).await?.ok_or_else(missing)?;
            let body = if head {
                Body::empty()
            } else {
                crate::metrics::global().tarball_served(blob.len);
                Body::from_stream(blob.body)
            };
            builder
                .header(header::CONTENT_LENGTH, blob.len)
                .header(header::ETAG, blob.etag)
                .header(header::ACCEPT_RANGES, "bytes")
                .body(body)
                .map_err(ApiError::internal)
        }
        // Being pulled: the bytes go out as they arrive. Should the pull fail, the body
        // is cut short, which every client treats as a failed download.
        Download::Streaming(follower) => {
            crate::metrics::global().tarball_served(follower.len.unwrap_or(0));
            let builder = match follower.len {
                Some(len) => builder.header(header::CONTENT_LENGTH, len),
                None => builder,
            };
            builder
                .body(Body::from_stream(follower.into_stream()))
                .map_err(ApiError::internal)
        }
    }
}

/// The one byte range a download asks for, unless `If-Range` names another version of
/// it (then the whole tarball goes out).
fn asked_range(headers: &HeaderMap, key: &BlobKey) -> Option<ByteRange> {
    let asked = crate::http::ranges::parse(headers.get(header::RANGE)?.to_str().ok()?)?;
    match headers.get(header::IF_RANGE) {
        Some(validator) if validator.as_bytes() != key.etag().as_bytes() => None,
        _ => Some(asked),
    }
}

pub async fn collaborators(ctx: &Ctx, name: &PackageName) -> ApiResult<Response> {
    ctx.require_read()?;
    let prepared = ctx.package(name).await?;
    let map: serde_json::Map<String, Value> = super::held(&prepared)?
        .maintainers
        .iter()
        .map(|m| (m.name.clone(), Value::String("read-write".into())))
        .collect();
    Ok(axum::Json(map).into_response())
}

/// npm asks this before generating provenance; every caller who may publish gets an answer.
pub async fn visibility(ctx: &Ctx, name: &PackageName) -> ApiResult<Response> {
    ctx.require_read()?;
    ctx.package(name).await?;
    Ok(axum::Json(json!({ "public": ctx.registry.public_read })).into_response())
}
