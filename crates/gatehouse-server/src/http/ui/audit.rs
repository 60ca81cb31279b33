//! The audit log (administrators only): newest first, filtered by registry, user,
//! action and time, paged by a cursor (the last entry's id) so no entry is skipped
//! or shown twice while new ones arrive.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use gatehouse_store::{AuditAction, AuditQuery, Millis};

use super::users::require_admin;
use super::{Nav, UiError, UiResult, Viewer, render, when};
use crate::app::App;

const PAGE_SIZE: u32 = 50;

#[derive(Deserialize, Default)]
pub struct Filters {
    #[serde(default)]
    registry: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    action: String,
    /// `YYYY-MM-DDTHH:MM`, UTC (what `<input type="datetime-local">` sends).
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    before: Option<i64>,
}

struct Row {
    at: String,
    actor: String,
    action: String,
    registry: String,
    package: String,
    from: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "ui/audit.html")]
struct AuditPage {
    nav: Nav,
    filters: Filters,
    registries: Vec<String>,
    actions: Vec<&'static str>,
    rows: Vec<Row>,
    /// The query string of the next (older) page, when there is one.
    older: Option<String>,
}

/// A form's time (UTC) as milliseconds; empty: no bound.
fn time(field: &str, label: &str) -> UiResult<Option<Millis>> {
    let field = field.trim();
    if field.is_empty() {
        return Ok(None);
    }
    let parsed = chrono::NaiveDateTime::parse_from_str(field, "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(field, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| {
            UiError::Refused(
                StatusCode::BAD_REQUEST,
                format!("{label}: {field:?} is not a time like 2026-12-01T09:30 (UTC)."),
            )
        })?;
    Ok(Some(parsed.and_utc().timestamp_millis()))
}

/// `GET /-/ui/audit?registry=&user=&action=&from=&to=&before=`
pub async fn list(State(app): State<Arc<App>>, viewer: Viewer, Query(filters): Query<Filters>) -> UiResult {
    require_admin(&viewer, "The audit log")?;
    let action = match filters.action.as_str() {
        "" => None,
        raw => Some(
            AuditAction::parse(raw)
                .ok_or_else(|| UiError::Refused(StatusCode::BAD_REQUEST, format!("Action: unknown action {raw:?}.")))?,
        ),
    };
    let given = |field: &str| Some(field.trim().to_owned()).filter(|f| !f.is_empty());
    let query = AuditQuery {
        registry: given(&filters.registry),
        actor: given(&filters.user),
        action,
        since: time(&filters.from, "From")?,
        until: time(&filters.to, "To")?,
        before: filters.before,
        limit: PAGE_SIZE + 1,
    };
    let mut entries = app.meta.audit_entries(&query).await?;
    let older = (entries.len() > PAGE_SIZE as usize).then(|| {
        entries.truncate(PAGE_SIZE as usize);
        let last = entries.last().map_or(0, |(_, e)| e.id);
        serde_urlencoded::to_string([
            ("registry", filters.registry.as_str()),
            ("user", filters.user.as_str()),
            ("action", filters.action.as_str()),
            ("from", filters.from.as_str()),
            ("to", filters.to.as_str()),
            ("before", &last.to_string()),
        ])
        .unwrap_or_default()
    });
    let dash = |v: Option<String>| v.unwrap_or_default();
    let rows = entries
        .into_iter()
        .map(|(at, e)| Row {
            at: when(at),
            actor: dash(e.actor),
            action: e.action,
            registry: dash(e.registry),
            package: match (e.package, e.version) {
                (Some(p), Some(v)) => format!("{p}@{v}"),
                (Some(p), None) => p,
                _ => String::new(),
            },
            from: dash(e.client_addr),
            detail: dash(e.detail),
        })
        .collect();
    Ok(render(&AuditPage {
        nav: viewer.nav(),
        registries: app
            .meta
            .registries()
            .await?
            .iter()
            .map(|r| r.name.to_string())
            .collect(),
        actions: AuditAction::ALL.iter().map(|a| a.as_str()).collect(),
        filters,
        rows,
        older,
    }))
}
