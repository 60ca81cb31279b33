//! The admin API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! attributes and served at `/-/api/v1/openapi.json`. The snapshot in
//! `crates/gatehouse-server/openapi.json` must match it (a test says so), so a change
//! to the API shows in review.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

use super::{firewall, housekeeping, registry_access, trust};

/// An error, as `application/problem+json` (RFC 9457).
#[derive(Serialize, ToSchema)]
pub struct ProblemDetails {
    /// Always `about:blank`: the status says what kind of error it is.
    #[schema(example = "about:blank")]
    r#type: String,
    #[schema(example = "Not Found")]
    title: String,
    #[schema(example = 404)]
    status: u16,
    /// What went wrong and what to do, for a person to read.
    detail: String,
    /// The same as `detail`, as the registry routes and npm name it.
    error: String,
}

#[derive(ToResponse)]
#[response(
    description = "The request is wrong; `detail` says how",
    content_type = "application/problem+json"
)]
pub struct BadRequest(pub ProblemDetails);

#[derive(ToResponse)]
#[response(description = "No valid credentials", content_type = "application/problem+json")]
pub struct Unauthorized(pub ProblemDetails);

#[derive(ToResponse)]
#[response(
    description = "Not an administrator, a read-only token, or a token for another registry",
    content_type = "application/problem+json"
)]
pub struct Forbidden(pub ProblemDetails);

#[derive(ToResponse)]
#[response(
    description = "No such registry, user or item",
    content_type = "application/problem+json"
)]
pub struct NotFound(pub ProblemDetails);

struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse admin API",
        description = "Registries, users, the firewall and trusted publishing. Administrators with a read-write token (Bearer) or their password (Basic)."
    ),
    modifiers(&Credentials),
    components(schemas(ProblemDetails), responses(BadRequest, Unauthorized, Forbidden, NotFound)),
    security(("bearer" = []), ("basic" = [])),
    paths(
        super::list_registries,
        super::create_registry,
        super::change_registry,
        super::delete_registry,
        super::list_packages,
        super::registry_setup,
        super::delete_package,
        super::purge_package,
        super::clone_registry,
        super::push_version,
        super::list_claims,
        super::add_claim,
        super::remove_claim,
        super::list_users,
        super::create_user,
        super::change_user,
        super::delete_user,
        super::unlock_user,
        super::audit,
        firewall::get_policy,
        firewall::set_policy,
        firewall::reset_policy,
        firewall::check_lockfile,
        firewall::decisions,
        firewall::quarantine_queue,
        firewall::quarantine_approve,
        firewall::quarantine_reject,
        firewall::list_exceptions,
        firewall::add_exception,
        firewall::remove_exception,
        firewall::advisory_stats,
        firewall::import_advisories,
        registry_access::list_upstreams,
        registry_access::add_upstream,
        registry_access::change_upstream,
        registry_access::remove_upstream,
        registry_access::list_members,
        registry_access::grant,
        registry_access::revoke,
        registry_access::list_tokens,
        registry_access::create_token,
        registry_access::revoke_token,
        housekeeping::check,
        housekeeping::gc,
        housekeeping::change_package,
        trust::list_trust,
        trust::add_trust,
        trust::remove_trust,
    )
)]
pub struct ApiDoc;

/// The document as served (pretty, so the snapshot reads well in a diff).
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// `GET /-/api/v1/openapi.json`: public, like any API's description.
pub async fn serve() -> Response {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&document()) else {
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    Json(value).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed snapshot is the document the handlers produce; regenerate it with
    /// `UPDATE_SNAPSHOTS=1 cargo test -p gatehouse-server openapi` after an API change.
    #[test]
    fn the_openapi_snapshot_matches_the_handlers() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let now = document() + "\n";
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &now).expect("write the snapshot");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == now,
            "the admin API changed without its OpenAPI snapshot: review the difference, then run \
             UPDATE_SNAPSHOTS=1 cargo test -p gatehouse-server openapi and commit {}",
            path.display()
        );
    }

    #[test]
    fn every_api_route_is_documented() {
        let doc = ApiDoc::openapi();
        let router = include_str!("../../http.rs");
        for line in router.lines().map(str::trim) {
            let Some(rest) = line.strip_prefix(".route(\"/-/api/v1/") else {
                continue;
            };
            let path = format!("/-/api/v1/{}", rest.split('"').next().unwrap_or_default());
            if path.ends_with("openapi.json") {
                continue;
            }
            let documented = path.replace("{*name}", "{name}").replace("{*pattern}", "{pattern}");
            assert!(
                doc.paths.paths.contains_key(&documented),
                "{path} is not in the OpenAPI document"
            );
        }
    }
}
