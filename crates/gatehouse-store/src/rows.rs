//! What the SQL backends share: reading the row types out of result rows (both
//! schemas use the same column types: BIGINT, TEXT, BOOLEAN, BLOB/BYTEA), the JSON
//! list columns, and turning sqlx errors into `StoreError`.

use sqlx::Row;

use crate::registry::{RegistryName, Role};
use crate::{
    AuditEntryOwned, BlobRef, ChangeKind, Conflict, DecisionRow, ExceptionRow, Millis, Registry, RegistryId, SearchHit,
    StoreError, StoreResult, Token, TrustRow, UpstreamId, UpstreamRow, User, UserId, VersionRecord,
};
use gatehouse_npm::name::PackageName;

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            // PostgreSQL names the constraint; SQLite does not, and its callers say
            // which conflict a statement can hit instead.
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.constraint().map_or(Conflict::Exists, conflict_of_constraint))
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(err)),
            // The server shutting down or not yet accepting (57P01…57P03).
            sqlx::Error::Database(db) if db.code().is_some_and(|code| code.starts_with("57P")) => {
                StoreError::Unavailable(Box::new(err))
            }
            _ => StoreError::Database(Box::new(err)),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError::Database(Box::new(err))
    }
}

/// The conflict a unique constraint (or unique index) stands for, by its name in the
/// migrations.
fn conflict_of_constraint(constraint: &str) -> Conflict {
    match constraint {
        "versions_package_id_release_key_key" | "versions_package_id_version_key" => Conflict::VersionExists,
        "registries_name_key" => Conflict::RegistryExists,
        "users_name_key" => Conflict::UserExists,
        "upstreams_registry_id_spec_key" => Conflict::UpstreamExists,
        _ => Conflict::Exists,
    }
}

/// The typed reads the mappers below need, for either backend's rows (sqlx's own
/// bounds would have to be spelled out per type and per database).
pub(crate) trait Columns {
    fn int(&self, column: &str) -> StoreResult<i64>;
    fn opt_int(&self, column: &str) -> StoreResult<Option<i64>>;
    fn text(&self, column: &str) -> StoreResult<String>;
    fn opt_text(&self, column: &str) -> StoreResult<Option<String>>;
    fn flag(&self, column: &str) -> StoreResult<bool>;
}

macro_rules! columns_for {
    ($row:ty) => {
        impl Columns for $row {
            fn int(&self, column: &str) -> StoreResult<i64> {
                Ok(self.try_get(column)?)
            }
            fn opt_int(&self, column: &str) -> StoreResult<Option<i64>> {
                Ok(self.try_get(column)?)
            }
            fn text(&self, column: &str) -> StoreResult<String> {
                Ok(self.try_get(column)?)
            }
            fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
                Ok(self.try_get(column)?)
            }
            fn flag(&self, column: &str) -> StoreResult<bool> {
                Ok(self.try_get(column)?)
            }
        }
    };
}
columns_for!(sqlx::sqlite::SqliteRow);
columns_for!(sqlx::postgres::PgRow);

pub(crate) fn role_from_text(text: &str) -> StoreResult<Option<Role>> {
    Role::parse_or_none(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn json_list(text: Option<String>) -> StoreResult<Vec<String>> {
    match text {
        Some(text) => serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string())),
        None => Ok(Vec::new()),
    }
}

pub(crate) fn json_list_text(list: &[String]) -> StoreResult<Option<String>> {
    (!list.is_empty())
        .then(|| serde_json::to_string(list))
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn package_name(raw: String) -> StoreResult<PackageName> {
    PackageName::parse(&raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn registry_name(raw: &str) -> StoreResult<RegistryName> {
    RegistryName::parse(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The user columns, aliased so they can sit next to another table's.
pub(crate) const USER_COLUMNS: &str = "users.id AS user_id, users.name AS user_name, users.email, users.is_admin, users.password_hash, users.created_at AS user_created_at, users.disabled_at AS user_disabled_at";

pub(crate) fn user_from_row(row: &impl Columns) -> StoreResult<User> {
    Ok(User {
        id: UserId(row.int("user_id")?),
        name: row.text("user_name")?,
        email: row.opt_text("email")?,
        is_admin: row.flag("is_admin")?,
        password_hash: row.text("password_hash")?,
        created_at: row.int("user_created_at")?,
        disabled: row.opt_int("user_disabled_at")?.is_some(),
    })
}

pub(crate) const TOKEN_SELECT: &str = "SELECT tokens.key, tokens.display, tokens.name AS token_name, tokens.readonly,
        tokens.cidr_whitelist, tokens.registries, tokens.packages, tokens.created_at AS token_created_at, tokens.last_used_at,
        tokens.expires_at, tokens.revoked_at, tokens.published_by, users.id AS user_id, users.name AS user_name, users.email,
        users.is_admin, users.password_hash, users.created_at AS user_created_at,
        users.disabled_at AS user_disabled_at
     FROM tokens JOIN users ON users.id = tokens.user_id";

pub(crate) fn token_from_row(row: &impl Columns) -> StoreResult<Token> {
    Ok(Token {
        key: row.text("key")?,
        display: row.text("display")?,
        user: user_from_row(row)?,
        name: row.opt_text("token_name")?,
        readonly: row.flag("readonly")?,
        cidr_whitelist: json_list(row.opt_text("cidr_whitelist")?)?,
        registries: json_list(row.opt_text("registries")?)?,
        packages: json_list(row.opt_text("packages")?)?,
        created_at: row.int("token_created_at")?,
        last_used_at: row.opt_int("last_used_at")?,
        expires_at: row.opt_int("expires_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        published_by: row.opt_text("published_by")?,
    })
}

pub(crate) const REGISTRY_COLUMNS: &str = "id, name, public_read, default_role, created_at";

pub(crate) fn registry_from_row(row: &impl Columns) -> StoreResult<Registry> {
    Ok(Registry {
        id: RegistryId(row.int("id")?),
        name: registry_name(&row.text("name")?)?,
        public_read: row.flag("public_read")?,
        default_role: role_from_text(&row.text("default_role")?)?,
        created_at: row.int("created_at")?,
    })
}

pub(crate) const TRUST_COLUMNS: &str = "id, registry_id, name, kind, rule, created_by, created_at";

pub(crate) fn trust_from_row(row: &impl Columns) -> StoreResult<TrustRow> {
    Ok(TrustRow {
        id: row.int("id")?,
        registry_id: RegistryId(row.int("registry_id")?),
        name: package_name(row.text("name")?)?,
        kind: row.text("kind")?,
        rule: row.text("rule")?,
        created_by: row.text("created_by")?,
        created_at: row.int("created_at")?,
    })
}

pub(crate) const EXCEPTION_COLUMNS: &str = "id, package, range, rule, expires_at, reason, created_by, created_at";

pub(crate) fn exception_from_row(r: &impl Columns) -> StoreResult<ExceptionRow> {
    Ok(ExceptionRow {
        id: r.int("id")?,
        package: r.text("package")?,
        range: r.text("range")?,
        rule: r.text("rule")?,
        expires_at: r.int("expires_at")?,
        reason: r.text("reason")?,
        created_by: r.opt_text("created_by")?,
        created_at: r.int("created_at")?,
    })
}

pub(crate) const DECISION_COLUMNS: &str =
    "package, version, verdict, would, rule, reason, findings, basis, facts, decided_at";

pub(crate) fn decision_from_row(r: &impl Columns) -> StoreResult<DecisionRow> {
    Ok(DecisionRow {
        package: r.text("package")?,
        version: r.text("version")?,
        verdict: r.text("verdict")?,
        would: r.text("would")?,
        rule: r.opt_text("rule")?,
        reason: r.text("reason")?,
        findings: r.text("findings")?,
        basis: r.text("basis")?,
        facts: r.opt_text("facts")?,
        decided_at: r.int("decided_at")?,
    })
}

/// A change-log row's `kind` and `name` as a `ChangeKind`.
pub(crate) fn change_kind(kind: &str, name: Option<String>) -> StoreResult<ChangeKind> {
    Ok(match (kind, name) {
        ("package", Some(name)) => ChangeKind::Package(package_name(name)?),
        ("credentials", _) => ChangeKind::Credentials,
        ("unlock", Some(name)) => ChangeKind::LoginUnlocked(name),
        ("advisories", _) => ChangeKind::Advisories,
        ("policy", _) => ChangeKind::Policy,
        _ => ChangeKind::Registry,
    })
}

/// The audit detail of a decision whose outcome changed.
pub(crate) fn decision_detail(row: &DecisionRow) -> String {
    match (&row.rule, row.verdict == row.would) {
        (Some(rule), true) => format!("{} ({rule}): {}", row.verdict, row.reason),
        (Some(rule), false) => format!(
            "{}, would {} in enforce mode ({rule}): {}",
            row.verdict, row.would, row.reason
        ),
        (None, _) => row.verdict.clone(),
    }
}

/// A version row (`SELECT version, manifest, blob_sha512, blob_size, published_at,
/// publisher, deprecated, unpublished_at, source, facts`).
pub(crate) fn version_from_row(r: &impl Columns) -> StoreResult<VersionRecord> {
    Ok(VersionRecord {
        version: r.text("version")?,
        manifest: r.text("manifest")?,
        blob: BlobRef {
            sha512_hex: r.text("blob_sha512")?,
            size: u64::try_from(r.int("blob_size")?).map_err(|_| StoreError::Corrupt("negative blob size".into()))?,
        },
        published_at: r.int("published_at")?,
        publisher: r.opt_text("publisher")?,
        deprecated: r.opt_text("deprecated")?,
        unpublished_at: r.opt_int("unpublished_at")?,
        source: r.text("source")?,
        facts: r.opt_text("facts")?,
    })
}

/// A row of the search's page.
pub(crate) fn search_hit_from_row(r: &impl Columns) -> StoreResult<SearchHit> {
    Ok(SearchHit {
        name: package_name(r.text("name")?)?,
        version: r.opt_text("latest")?,
        description: r.opt_text("description")?,
        keywords: r
            .opt_text("keywords")?
            .and_then(|k| serde_json::from_str::<Vec<String>>(&k).ok())
            .unwrap_or_default(),
        maintainers: r
            .opt_text("maintainer_names")?
            .map(|names| names.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        modified_at: r.int("modified_at")?,
    })
}

pub(crate) fn upstream_from_row(r: &impl Columns) -> StoreResult<UpstreamRow> {
    Ok(UpstreamRow {
        id: UpstreamId(r.int("id")?),
        spec: r.text("spec")?,
        token: r.opt_text("token")?,
        basic_auth: r.opt_text("basic_auth")?,
        internal: r.flag("internal")?,
    })
}

pub(crate) fn audit_from_row(r: &impl Columns) -> StoreResult<(Millis, AuditEntryOwned)> {
    Ok((
        r.int("at")?,
        AuditEntryOwned {
            id: r.int("id")?,
            actor: r.opt_text("actor")?,
            action: r.text("action")?,
            registry: r.opt_text("registry")?,
            package: r.opt_text("package")?,
            version: r.opt_text("version")?,
            detail: r.opt_text("detail")?,
            client_addr: r.opt_text("client_addr")?,
        },
    ))
}
