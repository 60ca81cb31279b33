//! `/-/package/{name}/dist-tags[/{tag}]`: `npm dist-tag ls/add/rm`.

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use gatehouse_npm::dist_tag::DistTag;
use gatehouse_npm::name::PackageName;

use super::Ctx;
use crate::http::error::{ApiError, ApiResult};

pub async fn list(ctx: &Ctx, name: &PackageName) -> ApiResult<Response> {
    ctx.require_read()?;
    let prepared = ctx.package(name).await?;
    Ok(axum::Json(&prepared.dist_tags).into_response())
}

/// The body is a JSON string naming the version (`"1.2.3"`), as npm sends it.
pub async fn set(ctx: &Ctx, name: &PackageName, tag: &str, body: &Bytes) -> ApiResult<Response> {
    ctx.require_writer()?;
    let tag = DistTag::parse(tag).map_err(ApiError::bad_request)?;
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
    ctx.app
        .services
        .set_dist_tag(&ctx.actor(), &ctx.registry, record, &tag, &version)
        .await?;
    Ok(axum::Json(json!({ "ok": true })).into_response())
}

pub async fn remove(ctx: &Ctx, name: &PackageName, tag: &str) -> ApiResult<Response> {
    ctx.require_writer()?;
    let prepared = ctx.local_package(name).await?;
    let record = super::held(&prepared)?;
    ctx.require_maintainer(record)?;
    ctx.app
        .services
        .remove_dist_tag(&ctx.actor(), &ctx.registry, record, tag)
        .await?;
    Ok(axum::Json(json!({ "ok": true })).into_response())
}
