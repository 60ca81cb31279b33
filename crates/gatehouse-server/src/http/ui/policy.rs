//! A registry's Policy tab: the quarantine queue, the policy document (edited and
//! saved by registry admins, checked before it is stored), "Check lockfile" (every
//! version a lockfile pins, judged by the document as it stands in the form, saved or
//! not), and the exceptions.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;

use gatehouse_policy::document::{Policy, Rule};
use gatehouse_store::registry::Role;
use gatehouse_store::{DecisionQuery, Registry};

use super::registries::{Flash, QueueRow, RegistryHead};
use super::{Nav, UiError, UiResult, Viewer, form, render, see_other, when};
use crate::app::App;
use crate::http::extract::LimitedBody;
use crate::lockfile_check::{self, CheckReport};
use crate::services::ExceptionRequest;

struct ExceptionView {
    id: i64,
    spec: String,
    rule: String,
    reason: String,
    expires: String,
    by: String,
}

/// A lockfile check's answer, as the page shows it.
struct CheckView {
    report: CheckReport,
    /// "the saved policy" or "the policy in the form (not saved)".
    against: &'static str,
    file: String,
}

#[derive(Template)]
#[template(path = "ui/policy.html")]
struct PolicyPage {
    nav: Nav,
    head: RegistryHead,
    done: Option<String>,
    /// A refusal of what was sent, shown above the form that keeps it.
    error: Option<String>,
    document: String,
    is_default: bool,
    queue: Vec<QueueRow>,
    show_registry: bool,
    back: &'static str,
    exceptions: Vec<ExceptionView>,
    rules: Vec<&'static str>,
    check: Option<CheckView>,
}

impl PolicyPage {
    async fn new(app: &App, viewer: &Viewer, registry: &Registry, role: Role) -> UiResult<Self> {
        let (document, is_default) = app.services.policy_document(registry).await?;
        let query = DecisionQuery {
            unreviewed: true,
            limit: 200,
            ..DecisionQuery::default()
        };
        let queue = app
            .services
            .decisions(registry, &query)
            .await?
            .into_iter()
            .map(|row| QueueRow::new(registry, row))
            .collect();
        let exceptions = app
            .services
            .exceptions(registry)
            .await?
            .into_iter()
            .map(|e| ExceptionView {
                id: e.id,
                spec: format!("{}@{}", e.package, e.range),
                rule: e.rule,
                reason: e.reason,
                expires: when(e.expires_at),
                by: e.created_by.unwrap_or_default(),
            })
            .collect();
        Ok(PolicyPage {
            nav: viewer.nav(),
            head: RegistryHead::new(app, registry, role, "Policy"),
            done: None,
            error: None,
            document,
            is_default,
            queue,
            show_registry: false,
            back: "policy",
            exceptions,
            rules: Rule::ALL
                .iter()
                .filter(|r| r.can_be_excepted())
                .map(|r| r.as_str())
                .collect(),
            check: None,
        })
    }
}

/// `GET /-/ui/r/{registry}/policy`
pub async fn show(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(flash): Query<Flash>,
) -> UiResult {
    let (registry, role) = viewer.registry(&app, &name, Role::Read).await?;
    let mut page = PolicyPage::new(&app, &viewer, &registry, role).await?;
    page.done = flash.done;
    Ok(render(&page))
}

/// The policy form's fields; it is sent as `multipart/form-data` (it carries a file).
#[derive(Default)]
struct PolicyForm {
    action: String,
    document: Option<String>,
    lockfile: Option<(String, Bytes)>,
}

async fn read_policy_form(headers: &HeaderMap, body: Bytes) -> UiResult<PolicyForm> {
    let bad = |why: String| UiError::Refused(StatusCode::BAD_REQUEST, format!("The form could not be read: {why}."));
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|e| bad(e.to_string()))?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut out = PolicyForm::default();
    while let Some(field) = multipart.next_field().await.map_err(|e| bad(e.to_string()))? {
        let name = field.name().unwrap_or_default().to_owned();
        let file = field.file_name().unwrap_or_default().to_owned();
        let data = field.bytes().await.map_err(|e| bad(e.to_string()))?;
        match name.as_str() {
            "action" => out.action = String::from_utf8_lossy(&data).into_owned(),
            "document" => {
                let text = String::from_utf8(data.to_vec()).map_err(|_| bad("the policy is not UTF-8 text".into()))?;
                // Browsers send textarea line ends as CRLF.
                out.document = Some(text.replace("\r\n", "\n"));
            }
            "lockfile" if !data.is_empty() => out.lockfile = Some((file, data)),
            _ => {}
        }
    }
    Ok(out)
}

/// `POST /-/ui/r/{registry}/policy`: save the document, reset it, or check a lockfile.
pub async fn submit(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(name): Path<String>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> UiResult {
    let (registry, role) = viewer.registry(&app, &name, Role::Read).await?;
    let request = read_policy_form(&headers, body).await?;
    let manage = role >= Role::Admin;
    let mut page = PolicyPage::new(&app, &viewer, &registry, role).await?;
    let back = format!("/-/ui/r/{}/policy", registry.name);
    match request.action.as_str() {
        "save" | "reset" if !manage => Err(UiError::Refused(
            StatusCode::FORBIDDEN,
            format!(
                "Changing the policy of {} needs the admin role there; you have {}. Nothing was changed.",
                registry.name,
                role.as_str()
            ),
        )),
        "save" => {
            let document = request.document.unwrap_or_default();
            match app
                .services
                .set_policy(&viewer.actor(), &registry, Some(&document))
                .await
            {
                Ok(()) => Ok(see_other(&back, "Policy saved; it applies from now on.")),
                Err(crate::services::ServiceError::Invalid(why)) => {
                    // Keep what was typed: the mistake is fixed in place.
                    page.error = Some(format!("Not saved: {why}"));
                    page.document = document;
                    Ok((StatusCode::BAD_REQUEST, render(&page)).into_response())
                }
                Err(e) => Err(e.into()),
            }
        }
        "reset" => {
            app.services.set_policy(&viewer.actor(), &registry, None).await?;
            Ok(see_other(&back, "Policy reset to the default."))
        }
        "check" => {
            let Some((file, bytes)) = request.lockfile else {
                page.error = Some("Choose a lockfile to check.".into());
                return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
            };
            // A registry admin checks the document in the form; anyone else the saved one.
            let edited = request.document.filter(|d| manage && *d != page.document);
            let candidate = match &edited {
                Some(document) => match Policy::parse(document) {
                    Ok(policy) => Some(Arc::new(policy)),
                    Err(e) => {
                        page.error = Some(format!("Not checked: the policy in the form is invalid: {e}"));
                        page.document = document.clone();
                        return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
                    }
                },
                None => None,
            };
            let text = match String::from_utf8(bytes.to_vec()) {
                Ok(text) => text,
                Err(_) => {
                    page.error = Some(format!("Not checked: {file} is not a text file."));
                    return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
                }
            };
            let parsed = crate::offload::cpu(text.len(), move || gatehouse_npm::lockfile::parse(&text))
                .await
                .map_err(crate::http::error::ApiError::internal)?;
            let lockfile = match parsed {
                Ok(lockfile) => lockfile,
                Err(e) => {
                    page.error = Some(format!("Not checked: {file}: {e}"));
                    if let Some(document) = edited {
                        page.document = document;
                    }
                    return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
                }
            };
            let report = lockfile_check::check(&app.packuments, &registry, &lockfile, candidate).await?;
            page.check = Some(CheckView {
                report,
                against: if edited.is_some() {
                    "the policy in the form (not saved)"
                } else {
                    "the saved policy"
                },
                file,
            });
            if let Some(document) = edited {
                page.document = document;
            }
            Ok(render(&page))
        }
        other => Err(UiError::Refused(
            StatusCode::BAD_REQUEST,
            format!("Unknown policy action {other:?}; nothing was changed."),
        )),
    }
}

#[derive(Deserialize)]
pub struct ExceptionForm {
    /// `NAME@RANGE`
    package: String,
    rule: String,
    expires: String,
    reason: String,
}

/// `POST /-/ui/r/{registry}/exceptions`
pub async fn add_exception(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(name): Path<String>,
    LimitedBody(body): LimitedBody,
) -> UiResult {
    let (registry, _) = viewer.registry(&app, &name, Role::Admin).await?;
    let request: ExceptionForm = form(&body)?;
    let row = app
        .services
        .add_exception(
            &viewer.actor(),
            &registry,
            &ExceptionRequest {
                spec: request.package.trim(),
                rule: request.rule.trim(),
                expires: request.expires.trim(),
                reason: &request.reason,
            },
        )
        .await?;
    Ok(see_other(
        &format!("/-/ui/r/{}/policy", registry.name),
        &format!(
            "Exception #{} added: {}@{} passes the {} rule until {}.",
            row.id,
            row.package,
            row.range,
            row.rule,
            when(row.expires_at)
        ),
    ))
}

/// `POST /-/ui/r/{registry}/exceptions/{id}/remove`
pub async fn remove_exception(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path((name, id)): Path<(String, i64)>,
) -> UiResult {
    let (registry, _) = viewer.registry(&app, &name, Role::Admin).await?;
    let removed = app.services.remove_exception(&viewer.actor(), &registry, id).await?;
    Ok(see_other(
        &format!("/-/ui/r/{}/policy", registry.name),
        &format!(
            "Exception #{id} removed: {}@{} is judged by the {} rule again.",
            removed.package, removed.range, removed.rule
        ),
    ))
}
