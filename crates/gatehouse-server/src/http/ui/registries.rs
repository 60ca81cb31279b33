//! The registries list and a registry's tabs: Packages, Setup, Upstreams, Access
//! (Policy is in `policy`); the quarantine queue.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use gatehouse_npm::setup::{SetupContext, Snippet};
use gatehouse_store::registry::{RegistryName, Role};
use gatehouse_store::{DecisionQuery, DecisionRow, Registry, SearchHit, SearchQuery};

use super::{Nav, UiError, UiResult, Viewer, form, package_path, render, see_other, when};
use crate::access;
use crate::app::App;
use crate::auth::token::TokenSpec;
use crate::http::extract::LimitedBody;
use crate::services::{UpstreamChange, UpstreamRequest};
use crate::upstream::spec::UpstreamSpec;

/// Packages per page of the Packages tab.
const PAGE_SIZE: u32 = 50;

/// A registry's header and tabs, shared by every tab.
pub struct RegistryHead {
    pub name: String,
    pub url: String,
    pub public: bool,
    pub role: &'static str,
    /// Which tab is open, as its label.
    pub tab: &'static str,
    pub manage: bool,
}

impl RegistryHead {
    pub(super) fn new(app: &App, registry: &Registry, role: Role, tab: &'static str) -> Self {
        RegistryHead {
            name: registry.name.to_string(),
            url: format!("{}/", app.registry_base(registry)),
            public: registry.public_read,
            role: role.as_str(),
            tab,
            manage: role >= Role::Admin,
        }
    }

    pub fn tabs(&self) -> [(&'static str, String); 5] {
        let base = format!("/-/ui/r/{}", self.name);
        [
            ("Packages", base.clone()),
            ("Setup", format!("{base}/setup")),
            ("Upstreams", format!("{base}/upstreams")),
            ("Policy", format!("{base}/policy")),
            ("Access", format!("{base}/access")),
        ]
    }
}

#[derive(Deserialize, Default)]
pub struct Flash {
    pub done: Option<String>,
}

struct RegistryRow {
    name: String,
    url: String,
    public: bool,
    packages: u64,
    quarantined: usize,
    upstreams: String,
}

#[derive(Template)]
#[template(path = "ui/registries.html")]
struct RegistriesPage {
    nav: Nav,
    done: Option<String>,
    registries: Vec<RegistryRow>,
}

/// The registries this person may see, with their roles.
async fn visible(app: &App, viewer: &Viewer) -> UiResult<Vec<(Registry, Role)>> {
    let mut out = Vec::new();
    for registry in app.services.registries().await? {
        match app.access.effective_role(&registry, &viewer.principal).await? {
            Some(role) => out.push((registry, role)),
            None if registry.public_read => out.push((registry, Role::Read)),
            None => {}
        }
    }
    Ok(out)
}

async fn quarantined(app: &App, registry: &Registry, limit: u32) -> UiResult<Vec<DecisionRow>> {
    let query = DecisionQuery {
        unreviewed: true,
        limit,
        ..DecisionQuery::default()
    };
    Ok(app.services.decisions(registry, &query).await?)
}

/// `GET /-/ui/`: the registries, with package and quarantine counts.
pub async fn list(State(app): State<Arc<App>>, viewer: Viewer, Query(flash): Query<Flash>) -> UiResult {
    let mut registries = Vec::new();
    for (registry, _) in visible(&app, &viewer).await? {
        let count = SearchQuery {
            text: String::new(),
            size: 0,
            from: 0,
        };
        let (_, packages) = app.meta.search(registry.id, &count).await?;
        let upstreams = app
            .meta
            .upstreams(registry.id)
            .await?
            .into_iter()
            .map(|u| u.spec)
            .collect::<Vec<_>>()
            .join(", ");
        registries.push(RegistryRow {
            url: format!("{}/", app.registry_base(&registry)),
            public: registry.public_read,
            packages,
            quarantined: quarantined(&app, &registry, 1000).await?.len(),
            upstreams,
            name: registry.name.to_string(),
        });
    }
    Ok(render(&RegistriesPage {
        nav: viewer.nav(),
        done: flash.done,
        registries,
    }))
}

#[derive(Deserialize)]
pub struct NewRegistry {
    name: String,
    public: Option<String>,
    /// "on": proxy the public npm registry.
    npmjs: Option<String>,
    /// One more upstream: a URL or `registry:OTHER`.
    upstream: Option<String>,
}

/// `POST /-/ui/`: create a registry (administrators).
pub async fn create(State(app): State<Arc<App>>, viewer: Viewer, LimitedBody(body): LimitedBody) -> UiResult {
    access::require_admin(Some(&viewer.principal))?;
    let request: NewRegistry = form(&body)?;
    let name = RegistryName::parse(request.name.trim())
        .map_err(|e| UiError::Refused(StatusCode::BAD_REQUEST, format!("Registry name: {e}")))?;
    let mut upstreams = Vec::new();
    if request.npmjs.is_some() {
        upstreams.push(UpstreamRequest::plain(UpstreamSpec::Npmjs));
    }
    if let Some(raw) = request.upstream.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
        let spec = UpstreamSpec::parse(raw)
            .map_err(|e| UiError::Refused(StatusCode::BAD_REQUEST, format!("Upstream: {e}")))?;
        upstreams.push(UpstreamRequest::plain(spec));
    }
    app.services
        .create_registry(&viewer.actor(), &name, request.public.is_some(), &upstreams)
        .await?;
    Ok(see_other(
        &format!("/-/ui/r/{name}/setup"),
        &format!("Registry {name} created."),
    ))
}

#[derive(Template)]
#[template(path = "ui/confirm_delete.html")]
struct ConfirmDeletePage {
    nav: Nav,
    name: String,
    packages: u64,
}

/// `GET /-/ui/r/{registry}/delete`: what deleting would take away, and a form that
/// asks for the name again.
pub async fn confirm_delete(State(app): State<Arc<App>>, viewer: Viewer, Path(name): Path<String>) -> UiResult {
    access::require_admin(Some(&viewer.principal))?;
    let (registry, _) = viewer.registry(&app, &name, Role::Admin).await?;
    let count = SearchQuery {
        text: String::new(),
        size: 0,
        from: 0,
    };
    let (_, packages) = app.meta.search(registry.id, &count).await?;
    Ok(render(&ConfirmDeletePage {
        nav: viewer.nav(),
        name: registry.name.to_string(),
        packages,
    }))
}

#[derive(Deserialize)]
pub struct DeleteForm {
    confirm: String,
}

/// `POST /-/ui/r/{registry}/delete` with the registry's name typed again.
pub async fn delete(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(name): Path<String>,
    LimitedBody(body): LimitedBody,
) -> UiResult {
    access::require_admin(Some(&viewer.principal))?;
    let (registry, _) = viewer.registry(&app, &name, Role::Admin).await?;
    let request: DeleteForm = form(&body)?;
    if request.confirm.trim() != registry.name.as_str() {
        return Err(UiError::Refused(
            StatusCode::BAD_REQUEST,
            format!(
                "Type the registry's name, {}, to delete it. Nothing was deleted.",
                registry.name
            ),
        ));
    }
    app.services.delete_registry(&viewer.actor(), &registry).await?;
    Ok(see_other("/-/ui/", &format!("Registry {} deleted.", registry.name)))
}

#[derive(Template)]
#[template(path = "ui/packages.html")]
struct PackagesPage {
    nav: Nav,
    head: RegistryHead,
    done: Option<String>,
    q: String,
    hits: Vec<SearchHit>,
    total: u64,
    page: u32,
    pages: u32,
    quarantined: usize,
}

impl PackagesPage {
    fn href(&self, hit: &SearchHit) -> String {
        format!("/-/ui/r/{}/p/{}", self.head.name, package_path(hit.name.as_str()))
    }

    fn page_href(&self, page: u32) -> String {
        let q = percent_encoding::utf8_percent_encode(&self.q, percent_encoding::NON_ALPHANUMERIC);
        format!("/-/ui/r/{}?q={q}&page={page}", self.head.name)
    }

    fn changed(&self, hit: &SearchHit) -> String {
        when(hit.modified_at)
    }
}

#[derive(Deserialize, Default)]
pub struct PackagesQuery {
    q: Option<String>,
    page: Option<u32>,
    done: Option<String>,
}

/// `GET /-/ui/r/{registry}?q=&page=`: the Packages tab, searched and paged in the store.
pub async fn packages(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(query): Query<PackagesQuery>,
) -> UiResult {
    let (registry, role) = viewer.registry(&app, &name, Role::Read).await?;
    let q = query.q.unwrap_or_default();
    let page = query.page.unwrap_or(1).max(1);
    let search = SearchQuery {
        text: q.chars().take(200).collect(),
        size: PAGE_SIZE,
        from: (page - 1).saturating_mul(PAGE_SIZE),
    };
    let (hits, total) = app.meta.search(registry.id, &search).await?;
    let quarantined = quarantined(&app, &registry, 1000).await?.len();
    Ok(render(&PackagesPage {
        nav: viewer.nav(),
        head: RegistryHead::new(&app, &registry, role, "Packages"),
        done: query.done,
        q,
        hits,
        total,
        page,
        pages: u32::try_from(total.div_ceil(u64::from(PAGE_SIZE)))
            .unwrap_or(u32::MAX)
            .max(1),
        quarantined,
    }))
}

#[derive(Template)]
#[template(path = "ui/setup.html")]
struct SetupPage {
    nav: Nav,
    head: RegistryHead,
    snippets: Vec<Snippet>,
    /// The token just created, shown this once.
    token: Option<String>,
    token_name: Option<String>,
    plain_http: bool,
    done: Option<String>,
}

impl SetupPage {
    /// The sections in order, each with its blocks: (heading, slug, blocks).
    fn sections(&self) -> Vec<(&'static str, &'static str, Vec<&Snippet>)> {
        gatehouse_npm::setup::Client::ALL
            .iter()
            .map(|client| {
                let blocks = self.snippets.iter().filter(|s| s.client == *client).collect();
                (client.heading(), client.slug(), blocks)
            })
            .collect()
    }
}

fn setup_page(
    app: &App,
    viewer: &Viewer,
    registry: &Registry,
    role: Role,
    token: Option<(String, String)>,
    done: Option<String>,
) -> Response {
    let head = RegistryHead::new(app, registry, role, "Setup");
    let context = SetupContext {
        registry_url: &head.url,
        registry: registry.name.as_str(),
        scope: None,
        token: token.as_ref().map(|(secret, _)| secret.as_str()),
        user: Some(viewer.user().name.as_str()),
    };
    let snippets = gatehouse_npm::setup::all_snippets(&context);
    let plain_http = head.url.starts_with("http://");
    let (token, token_name) = token.map_or((None, None), |(secret, name)| (Some(secret), Some(name)));
    render(&SetupPage {
        nav: viewer.nav(),
        head,
        snippets,
        token,
        token_name,
        plain_http,
        done,
    })
}

/// `GET /-/ui/r/{registry}/setup`: copy-paste setup for every client.
pub async fn setup(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(query): Query<SetupQuery>,
) -> UiResult {
    let (registry, role) = viewer.registry(&app, &name, Role::Read).await?;
    let token = match &query.token {
        Some(id) => app.shown_once.take(&app.services, &viewer, id).await?,
        None => None,
    };
    let done = match (&query.token, &token) {
        (Some(_), None) => {
            Some("That token was shown once and is not shown again; create another if you did not copy it.".to_owned())
        }
        _ => query.done,
    };
    Ok(setup_page(&app, &viewer, &registry, role, token, done))
}

#[derive(Deserialize, Default)]
pub struct SetupQuery {
    done: Option<String>,
    /// A token just created, to show once.
    token: Option<String>,
}

#[derive(Deserialize)]
pub struct SetupToken {
    /// "on": the token may publish too.
    publish: Option<String>,
    cidr: Option<String>,
    /// `30d`, `12h`, …; empty: never.
    expires: Option<String>,
}

/// `POST /-/ui/r/{registry}/setup`: a token limited to this registry (read-only unless
/// asked); answered with a redirect to the Setup tab, which mints it and fills it into
/// the snippets this once (`ShownOnce`), so a reload neither shows it again nor makes
/// another.
pub async fn setup_token(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(name): Path<String>,
    LimitedBody(body): LimitedBody,
) -> UiResult {
    let request: SetupToken = form(&body)?;
    let publish = request.publish.is_some();
    let (registry, _) = viewer
        .registry(&app, &name, if publish { Role::Publish } else { Role::Read })
        .await?;
    let label = format!(
        "{} setup ({}, web app)",
        registry.name,
        if publish { "read and publish" } else { "read-only" }
    );
    let spec = TokenSpec {
        name: Some(label.clone()),
        readonly: !publish,
        cidr_whitelist: super::tokens::cidrs(request.cidr.as_deref())?,
        registries: vec![registry.name.to_string()],
        expires_at: super::tokens::expiry(request.expires.as_deref())?,
        ..TokenSpec::default()
    };
    let id = app.shown_once.keep(&viewer, spec, label).await?;
    Ok(Redirect::to(&format!("/-/ui/r/{}/setup?token={id}", registry.name)).into_response())
}

struct UpstreamView {
    spec: String,
    auth: &'static str,
    internal: bool,
}

#[derive(Template)]
#[template(path = "ui/upstreams.html")]
struct UpstreamsPage {
    nav: Nav,
    head: RegistryHead,
    done: Option<String>,
    upstreams: Vec<UpstreamView>,
}

/// `GET /-/ui/r/{registry}/upstreams`: in the order they are asked.
pub async fn upstreams(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(flash): Query<Flash>,
) -> UiResult {
    let (registry, role) = viewer.registry(&app, &name, Role::Read).await?;
    let upstreams = app
        .meta
        .upstreams(registry.id)
        .await?
        .into_iter()
        .map(|u| UpstreamView {
            auth: match (&u.token, &u.basic_auth) {
                (Some(_), _) => "token",
                (None, Some(_)) => "basic",
                (None, None) => "none",
            },
            spec: u.spec,
            internal: u.internal,
        })
        .collect();
    Ok(render(&UpstreamsPage {
        nav: viewer.nav(),
        head: RegistryHead::new(&app, &registry, role, "Upstreams"),
        done: flash.done,
        upstreams,
    }))
}

#[derive(Deserialize)]
pub struct UpstreamForm {
    /// add | remove | earlier | later | internal | external
    action: String,
    /// `npmjs`, a URL, or `registry:OTHER`.
    spec: String,
    token: Option<String>,
    basic: Option<String>,
    internal: Option<String>,
}

/// `POST /-/ui/r/{registry}/upstreams`: add, remove, reorder, the internal flag.
pub async fn change_upstreams(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(name): Path<String>,
    LimitedBody(body): LimitedBody,
) -> UiResult {
    let (registry, _) = viewer.registry(&app, &name, Role::Admin).await?;
    let request: UpstreamForm = form(&body)?;
    let spec = UpstreamSpec::parse(request.spec.trim())
        .map_err(|e| UiError::Refused(StatusCode::BAD_REQUEST, format!("Upstream: {e}")))?;
    let actor = viewer.actor();
    let filled = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let flash = match request.action.as_str() {
        "add" => {
            let upstream = UpstreamRequest {
                spec: spec.clone(),
                token: filled(request.token),
                basic_auth: filled(request.basic),
                internal: request.internal.is_some(),
            };
            app.services.add_upstream(&actor, &registry, &upstream).await?;
            format!("Upstream {spec} added.")
        }
        "remove" => {
            app.services.remove_upstream(&actor, &registry, &spec).await?;
            format!("Upstream {spec} removed.")
        }
        "earlier" | "later" | "internal" | "external" => {
            let change = match request.action.as_str() {
                "earlier" => UpstreamChange::Earlier,
                "later" => UpstreamChange::Later,
                "internal" => UpstreamChange::Internal(true),
                _ => UpstreamChange::Internal(false),
            };
            app.services.change_upstream(&actor, &registry, &spec, change).await?;
            format!("Upstream {spec} changed.")
        }
        other => {
            return Err(UiError::Refused(
                StatusCode::BAD_REQUEST,
                format!("Unknown upstream action {other:?}."),
            ));
        }
    };
    Ok(see_other(&format!("/-/ui/r/{}/upstreams", registry.name), &flash))
}

pub(super) struct QueueRow {
    pub registry: String,
    pub package: String,
    pub version: String,
    pub rule: String,
    pub reason: String,
    pub decided: String,
}

impl QueueRow {
    pub(super) fn new(registry: &Registry, row: DecisionRow) -> Self {
        QueueRow {
            registry: registry.name.to_string(),
            package: row.package,
            version: row.version,
            rule: row.rule.unwrap_or_default(),
            reason: row.reason,
            decided: when(row.decided_at),
        }
    }
}

#[derive(Deserialize)]
pub struct ReviewForm {
    package: String,
    version: String,
    /// approve | reject
    decision: String,
    reason: Option<String>,
    /// Where to go back to.
    back: Option<String>,
}

/// `POST /-/ui/r/{registry}/review`: approve or reject a quarantined version.
pub async fn review(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(name): Path<String>,
    LimitedBody(body): LimitedBody,
) -> UiResult {
    let (registry, _) = viewer.registry(&app, &name, Role::Admin).await?;
    let request: ReviewForm = form(&body)?;
    let approve = match request.decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(UiError::Refused(
                StatusCode::BAD_REQUEST,
                format!("Unknown decision {other:?}."),
            ));
        }
    };
    let spec = format!("{}@{}", request.package, request.version);
    let reason = request.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    app.services
        .review(&viewer.actor(), &registry, &spec, approve, reason)
        .await?;
    let back = match request.back.as_deref() {
        Some("queue") => "/-/ui/quarantine".to_owned(),
        _ => format!("/-/ui/r/{}/policy", registry.name),
    };
    let verb = if approve {
        "approved: it is served from now on"
    } else {
        "rejected: it stays blocked"
    };
    Ok(see_other(&back, &format!("{spec} {verb}.")))
}

#[derive(Template)]
#[template(path = "ui/quarantine.html")]
struct QuarantinePage {
    nav: Nav,
    done: Option<String>,
    queue: Vec<QueueRow>,
    show_registry: bool,
    back: &'static str,
}

/// `GET /-/ui/quarantine`: every quarantined version this person may decide on.
pub async fn quarantine(State(app): State<Arc<App>>, viewer: Viewer, Query(flash): Query<Flash>) -> UiResult {
    let mut queue = Vec::new();
    for (registry, role) in visible(&app, &viewer).await? {
        if role < Role::Admin {
            continue;
        }
        for row in quarantined(&app, &registry, 200).await? {
            queue.push(QueueRow::new(&registry, row));
        }
    }
    Ok(render(&QuarantinePage {
        nav: viewer.nav(),
        done: flash.done,
        queue,
        show_registry: true,
        back: "queue",
    }))
}

#[derive(Template)]
#[template(path = "ui/access.html")]
struct AccessPage {
    nav: Nav,
    head: RegistryHead,
    done: Option<String>,
    default_role: &'static str,
    /// `(user, role)` for everyone granted a role here.
    members: Vec<(String, &'static str)>,
}

/// `GET /-/ui/r/{registry}/access`: who may do what.
pub async fn access(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(flash): Query<Flash>,
) -> UiResult {
    let (registry, role) = viewer.registry(&app, &name, Role::Read).await?;
    let members = app
        .meta
        .grants()
        .await?
        .into_iter()
        .filter(|g| g.registry == registry.name)
        .map(|g| (g.user, g.role.as_str()))
        .collect();
    Ok(render(&AccessPage {
        nav: viewer.nav(),
        members,
        default_role: registry.default_role.map_or("none", Role::as_str),
        head: RegistryHead::new(&app, &registry, role, "Access"),
        done: flash.done,
    }))
}

#[derive(Deserialize)]
pub struct GrantForm {
    user: String,
    /// read | publish | admin | none
    role: String,
}

/// `POST /-/ui/r/{registry}/access`: grant a user a role, or take it away.
pub async fn grant(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(name): Path<String>,
    LimitedBody(body): LimitedBody,
) -> UiResult {
    let (registry, _) = viewer.registry(&app, &name, Role::Admin).await?;
    let request: GrantForm = form(&body)?;
    let role =
        Role::parse_or_none(&request.role).map_err(|e| UiError::Refused(StatusCode::BAD_REQUEST, e.to_string()))?;
    let user = app.services.user(request.user.trim()).await?;
    app.services
        .set_member_role(&viewer.actor(), &registry, &user, role)
        .await?;
    let shown = role.map_or("no role", Role::as_str);
    Ok(see_other(
        &format!("/-/ui/r/{}/access", registry.name),
        &format!("{} now has {shown} in {}.", user.name, registry.name),
    ))
}
