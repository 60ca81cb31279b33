//! `/-/package/{name}/dist-tags[/{tag}]`: `npm dist-tag ls/add/rm`.

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Ctx;
use crate::http::error::{ApiError, ApiResult};
use crate::npm::dist_tag::DistTag;
use crate::npm::name::PackageName;

pub async fn list(ctx: &Ctx, name: &PackageName) -> ApiResult<Response> {
    ctx.require_read()?;
    let prepared = ctx.package(name).await?;
    Ok(axum::Json(&prepared.dist_tags).into_response())
}

/// The body is a JSON string naming the version (`"1.2.3"`), as npm sends it.
pub async fn set(ctx: &Ctx, name: &PackageName, tag: &str, body: &Bytes) -> ApiResult<Response> {
    ctx.require_writer()?;
    let tag = DistTag::parse(tag).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let version = match serde_json::from_slice::<Value>(body) {
        Ok(Value::String(v)) => v,
        _ => {
            return Err(ApiError::BadRequest(
                "the body must be a JSON string naming a version, e.g. \"1.2.3\"".into(),
            ));
        }
    };
    let prepared = ctx.local_package(name).await?;
    let record = super::held(&prepared)?;
    ctx.require_maintainer(record)?;
    if !prepared.tarballs.contains_key(&version) {
        return Err(ApiError::NotFound(format!("version not found: {name}@{version}")));
    }
    ctx.app.meta.set_dist_tag(record.id, tag.as_str(), &version).await?;
    ctx.app.packuments.invalidate(ctx.registry.id, name).await;
    ctx.audit("dist-tag.set", Some(name), Some(&version), Some(format!("tag={tag}")))
        .await;
    Ok(axum::Json(json!({ "ok": true })).into_response())
}

pub async fn remove(ctx: &Ctx, name: &PackageName, tag: &str) -> ApiResult<Response> {
    ctx.require_writer()?;
    if tag == "latest" {
        return Err(ApiError::BadRequest(
            "the latest tag cannot be removed; move it instead".into(),
        ));
    }
    let prepared = ctx.local_package(name).await?;
    let record = super::held(&prepared)?;
    ctx.require_maintainer(record)?;
    if !ctx.app.meta.remove_dist_tag(record.id, tag).await? {
        return Err(ApiError::NotFound(format!("dist-tag \"{tag}\" not found on {name}")));
    }
    ctx.app.packuments.invalidate(ctx.registry.id, name).await;
    ctx.audit("dist-tag.remove", Some(name), None, Some(format!("tag={tag}")))
        .await;
    Ok(axum::Json(json!({ "ok": true })).into_response())
}
