//! `/-/v1/search` (npm, pnpm, Unity UPM) and the legacy `/-/all` listing.

use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Ctx;
use crate::http::error::{ApiError, ApiResult};
use gatehouse_npm::packument::iso_time;
use gatehouse_store::{SearchQuery, now_millis};

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    text: String,
    size: Option<u32>,
    from: Option<u32>,
}

const MAX_PAGE: u32 = 250;

pub async fn search(ctx: &Ctx, uri: &Uri) -> ApiResult<Response> {
    ctx.require_read()?;
    let params: Params = query_params(uri)?;
    let query = SearchQuery {
        text: params.text,
        size: params.size.unwrap_or(20).min(MAX_PAGE),
        from: params.from.unwrap_or(0),
    };
    let (hits, total) = ctx.app.meta.search(ctx.registry.id, &query).await?;
    let objects: Vec<Value> = hits
        .into_iter()
        .map(|hit| {
            json!({
                "package": {
                    "name": hit.name.to_string(),
                    "scope": hit.name.scope().unwrap_or("unscoped"),
                    "version": hit.version,
                    "description": hit.description,
                    "keywords": hit.keywords,
                    "date": iso_time(hit.modified_at),
                    "links": { "npm": format!("{}/{}", ctx.base, hit.name) },
                    // npm's search output maps over maintainers: always send the list.
                    "maintainers": hit.maintainers.iter().map(|m| json!({ "username": m })).collect::<Vec<_>>(),
                    "publisher": hit.maintainers.first().map(|m| json!({ "username": m })),
                },
                "score": { "final": 1.0, "detail": { "quality": 1.0, "popularity": 1.0, "maintenance": 1.0 } },
                "searchScore": 1.0,
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "objects": objects,
        "total": total,
        "time": chrono::Utc::now().to_rfc2822(),
    }))
    .into_response())
}

/// Every package of the registry keyed by name, plus `_updated` (old npm, Unity).
pub async fn all(ctx: &Ctx) -> ApiResult<Response> {
    ctx.require_read()?;
    let mut out = Map::new();
    out.insert("_updated".into(), json!(now_millis()));
    for name in ctx.app.meta.all_packages(ctx.registry.id).await? {
        let prepared = ctx.package(&name).await?;
        let record = super::held(&prepared)?;
        let latest = record.dist_tags.get("latest");
        let description = latest
            .and_then(|v| record.versions.iter().find(|r| &r.version == v))
            .and_then(|r| serde_json::from_str::<Value>(&r.manifest).ok())
            .and_then(|m| m.get("description").cloned());
        // Old npm's shape: each tagged version, keyed to its tag.
        let versions: Map<String, Value> = record
            .dist_tags
            .iter()
            .map(|(tag, version)| (version.clone(), Value::String(tag.clone())))
            .collect();
        out.insert(
            name.to_string(),
            json!({
                "name": name.to_string(),
                "description": description,
                "dist-tags": record.dist_tags,
                "versions": versions,
                "time": { "modified": iso_time(record.modified_at) },
            }),
        );
    }
    Ok(axum::Json(out).into_response())
}

fn query_params<T: serde::de::DeserializeOwned>(uri: &Uri) -> ApiResult<T> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))
}
