//! Changing packages: publish, deprecate, owners, unpublish.

use std::collections::{BTreeMap, HashSet};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use gatehouse_npm::name::PackageName;
use gatehouse_npm::packument::parse_rev;
use gatehouse_npm::publish::{self, Document, PackageWrite, Publish};

use super::Ctx;
use crate::admission::{Attestations, Candidate, Origin};
use crate::http::error::{ApiError, ApiResult, header_text};
use crate::packument_cache::CacheError;

/// `PUT /{name}` and `PUT /{name}/-rev/{rev}`.
pub async fn put_package(ctx: &Ctx, name: &PackageName, rev: Option<&str>, body: Bytes) -> ApiResult<Response> {
    // Each kind of write checks its own caller below; a trusted-publishing token only publishes.
    ctx.require_publisher()?;
    let url_name = name.clone();
    let write = crate::offload::cpu(body.len(), move || publish::parse(&url_name, &body))
        .await
        .map_err(ApiError::internal)??;
    match write {
        PackageWrite::Publish(publish) => publish_version(ctx, *publish).await,
        PackageWrite::Document(document) => update_document(ctx, name, rev, document).await,
        PackageWrite::Owners(owners) => set_owners(ctx, name, rev, &owners).await,
        PackageWrite::Star => Err(ApiError::Forbidden("stars are not supported by this registry".into())),
    }
}

async fn publish_version(ctx: &Ctx, publish: Publish) -> ApiResult<Response> {
    let principal = ctx.require_publisher()?;
    // Only this registry's own record counts: a first publish must not ask the
    // upstreams about a (possibly internal) name.
    ctx.check_token_package(&publish.name)?;
    let trusted = principal.published_by();
    require_trusted_publishing_if_asked(ctx, &publish.name, trusted.is_some()).await?;
    let target = ctx
        .app
        .meta
        .publish_target(ctx.registry.id, &publish.name, publish.version.release_key())
        .await?;
    match &target {
        // A trust configuration, made by a maintainer, lets its CI job publish.
        Some(_) if trusted.is_some() => {}
        Some(target) => {
            ctx.require_maintainer_of(&publish.name, &target.maintainers)?;
        }
        None => {
            publish.name.check_new().map_err(ApiError::bad_request)?;
            refuse_shadowing(ctx, &publish.name).await?;
        }
    }
    let name = publish.name.clone();
    let version = publish.version.to_string();
    let admitted = ctx
        .app
        .admission
        .admit(Candidate {
            registry: &ctx.registry,
            target: target.as_ref(),
            name: publish.name,
            version: publish.version,
            manifest: publish.manifest,
            tarball: publish.tarball,
            staged: None,
            digests: publish.digests,
            tags: publish.tags,
            publisher: Some(&principal.user),
            origin: match trusted {
                Some(by) => Origin::TrustedPublish(by.clone()),
                None => Origin::Publish,
            },
            client_addr: Some(ctx.client_ip.to_string()),
            policy: None,
            provenance: publish.provenance.map(Attestations::Bundle),
        })
        .await?;
    let mut response = (
        StatusCode::CREATED,
        axum::Json(json!({ "ok": true, "success": true, "id": name.to_string(), "version": version })),
    )
        .into_response();
    // Quarantined for review, or let in with a warning: npm prints this.
    if let Some(notice) = admitted.notice {
        response.headers_mut().insert("npm-notice", header_text(&notice));
    }
    Ok(response)
}

/// A registry whose policy names the package in `[trusted_publishing] require`
/// refuses a publish with any credential but a trusted-publishing token.
async fn require_trusted_publishing_if_asked(ctx: &Ctx, name: &PackageName, trusted: bool) -> ApiResult<()> {
    if trusted {
        return Ok(());
    }
    let policy = ctx
        .app
        .firewall
        .policy(ctx.registry.id)
        .await
        .map_err(ApiError::internal)?;
    if policy.policy.requires_trusted_publishing(name.as_str()) {
        return Err(ApiError::Forbidden(format!(
            "the policy of registry \"{}\" requires new versions of {name} to come through trusted publishing: \
             publish from the CI workflow its trust configuration names (npm trust list {name}), not with a token",
            ctx.registry.name
        )));
    }
    Ok(())
}

/// A name new to this registry that one of its upstreams serves may only be published
/// once a registry admin claimed it: otherwise any publisher could hide a public
/// package from everyone (the new name turns internal, and the upstream's versions
/// stop being served). Claimed names are not even looked up upstream.
async fn refuse_shadowing(ctx: &Ctx, name: &PackageName) -> ApiResult<()> {
    if ctx.app.services.is_claimed(&ctx.registry, name).await? {
        return Ok(());
    }
    let claim = format!(
        "if \"{name}\" is yours, a registry admin can claim it for this registry: gatehouse package claim {} {}",
        ctx.registry.name,
        match name.scope() {
            Some(scope) => format!("{name} (or the whole scope: @{scope}/*)"),
            None => name.to_string(),
        }
    );
    match ctx.app.packuments.get(&ctx.registry, name).await {
        // A frozen registry refuses the publish in admission, saying so.
        Err(CacheError::Absent | CacheError::Frozen(_)) => Ok(()),
        Ok(_) => Err(ApiError::Forbidden(format!(
            "\"{name}\" is served by an upstream of registry \"{}\"; publishing it here would hide that package \
             from everyone using this registry. Publish under a name of your own, or {claim}",
            ctx.registry.name
        ))),
        Err(e) => Err(ApiError::BadGateway(format!(
            "cannot tell whether an upstream of registry \"{}\" serves \"{name}\" ({e}); try again later, or {claim}",
            ctx.registry.name
        ))),
    }
}

/// A whole document sent back: deprecation changes, or (with a rev) versions removed
/// by `npm unpublish name@version`. It may never add versions or change their content.
async fn update_document(ctx: &Ctx, name: &PackageName, rev: Option<&str>, document: Document) -> ApiResult<Response> {
    ctx.check_token_package(name)?;
    // Most often a publish that lost its attachment: say so rather than a bare 404.
    let record = ctx.app.meta.package(ctx.registry.id, name).await?.ok_or_else(|| {
        ApiError::BadRequest(format!(
            "package \"{name}\" does not exist; a new package must be published with its tarball attachment"
        ))
    })?;
    ctx.require_maintainer(&record)?;
    let live: HashSet<&str> = record.live_versions().map(|v| v.version.as_str()).collect();
    let sent: HashSet<&str> = document.deprecations.iter().map(|(v, _)| v.as_str()).collect();
    if let Some(unknown) = sent.iter().find(|v| !live.contains(*v)) {
        return Err(ApiError::BadRequest(format!(
            "version {unknown} does not exist; new versions must be published with their tarball"
        )));
    }
    let removed: Vec<String> = live
        .iter()
        .filter(|v| !sent.contains(*v))
        .map(|v| (*v).to_owned())
        .collect();
    if !removed.is_empty() {
        let Some(rev) = rev else {
            return Err(ApiError::BadRequest(
                "a document without some versions must be sent to /-rev/{rev} (npm unpublish)".into(),
            ));
        };
        let tags: BTreeMap<String, String> = document.dist_tags.into_iter().collect();
        ctx.app
            .services
            .unpublish_versions(&ctx.actor(), &ctx.registry, &record, parse_rev(rev), &removed, &tags)
            .await?;
        return Ok(ok());
    }
    ctx.app
        .services
        .deprecate(&ctx.actor(), &ctx.registry, &record, document.deprecations)
        .await?;
    Ok(ok())
}

async fn set_owners(ctx: &Ctx, name: &PackageName, rev: Option<&str>, owners: &[String]) -> ApiResult<Response> {
    let prepared = ctx.local_package(name).await?;
    let record = super::held(&prepared)?;
    ctx.require_maintainer(record)?;
    ctx.app
        .services
        .set_owners(&ctx.actor(), &ctx.registry, record, rev.and_then(parse_rev), owners)
        .await?;
    Ok(ok())
}

/// `DELETE /{name}/-rev/{rev}`: unpublish every version. The version numbers stay
/// taken, and `time` keeps them.
pub async fn unpublish_package(ctx: &Ctx, name: &PackageName, rev: &str) -> ApiResult<Response> {
    let prepared = ctx.local_package(name).await?;
    let record = super::held(&prepared)?;
    ctx.require_maintainer(record)?;
    ctx.app
        .services
        .unpublish_package(&ctx.actor(), &ctx.registry, record, parse_rev(rev))
        .await?;
    Ok(ok())
}

/// `DELETE /{name}/-/{file}/-rev/{rev}`: npm's last unpublish step. The version was
/// already removed by the document PUT; its blob is left to garbage collection
/// (another version or registry may share the bytes).
pub async fn delete_tarball(ctx: &Ctx, name: &PackageName, file: &str) -> ApiResult<Response> {
    ctx.require_writer()?;
    let prepared = ctx.local_package(name).await?;
    let record = super::held(&prepared)?;
    ctx.require_maintainer(record)?;
    let still_live = record
        .live_versions()
        .any(|v| gatehouse_npm::packument::tarball_file_name(name, &v.version) == file);
    if still_live {
        return Err(ApiError::BadRequest(
            "unpublish the version (PUT the document without it) before deleting its tarball".into(),
        ));
    }
    Ok(ok())
}

fn ok() -> Response {
    axum::Json(json!({ "ok": true })).into_response()
}
