//! `GET -/npm/v1/attestations/{name}@{version}`: a version's provenance, as
//! `npm audit signatures` fetches it. Bundles verified at publish are served from the
//! store; an upstream's pass through from the upstream that offers the version.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use gatehouse_npm::name::PackageName;
use gatehouse_npm::packument::attestations_url;
use serde_json::Value;

use super::Ctx;
use crate::http::error::{ApiError, ApiResult};
use crate::packument_cache;
use crate::upstream::Source;

pub async fn get(ctx: &Ctx, name: &PackageName, version: &str) -> ApiResult<Response> {
    ctx.require_read()?;
    let prepared = ctx.package(name).await?;
    ctx.refuse_withheld(&prepared, version)?;
    // Ours (or promoted here): no need to read the version out of the packument.
    if let Some(stored) = ctx.app.meta.attestations(ctx.registry.id, name, version).await? {
        return Ok(stored_response(&stored));
    }
    let none = || ApiError::NotFound(format!("{name}@{version} has no attestations"));
    let remote = prepared.remote.get(version).map(|r| r.source.clone());
    let manifest = packument_cache::version_manifest(prepared, version.to_owned())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("version not found: {name}@{version}")))?;
    let attested = manifest
        .get("dist")
        .and_then(|d| d.get("attestations"))
        .is_some_and(Value::is_object);
    if !attested {
        return Err(none());
    }
    // Offered by an upstream: the one it comes from, or (pulled earlier) the first
    // upstream that has them.
    let sources = match remote {
        Some(source) => vec![(*source).clone()],
        None => {
            let mut sources = Vec::new();
            for row in ctx.app.meta.upstreams(ctx.registry.id).await? {
                if let Ok(source) = ctx.app.upstreams.source(&row) {
                    sources.push(source);
                }
            }
            sources
        }
    };
    for source in sources {
        match source {
            Source::Remote { remote, .. } => {
                let url = attestations_url(remote.base.trim_end_matches('/'), name, version);
                match ctx.app.upstreams.client.attestations(&url, &remote.auth).await {
                    Ok(Some(body)) if lists_attestations(&body) => return Ok(json_response(body)),
                    Ok(Some(_)) => {
                        return Err(ApiError::BadGateway(format!(
                            "upstream {url} sent something other than a list of attestations"
                        )));
                    }
                    Ok(None) => {}
                    Err(e) => return Err(ApiError::BadGateway(e.to_string())),
                }
            }
            Source::Registry(registry) => {
                if let Some(from) = ctx.app.meta.registry(&registry).await?
                    && let Some(stored) = ctx.app.meta.attestations(from.id, name, version).await?
                {
                    return Ok(stored_response(&stored));
                }
            }
        }
    }
    Err(none())
}

fn lists_attestations(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|doc| doc.get("attestations").is_some_and(Value::is_array))
}

/// The stored list (`[{predicateType, bundle}]`) as the endpoint answers it.
fn stored_response(stored: &str) -> Response {
    json_response(format!("{{\"attestations\":{stored}}}").into())
}

fn json_response(body: Bytes) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}
