//! The PostgreSQL metadata store, for several server processes (replicas) over one
//! database.
//!
//! The same tables as SQLite and, where it can be, the same SQL (`$n` placeholders
//! suit both). What differs is that many processes write at once, where SQLite has
//! one writer. Transactions are READ COMMITTED (each statement sees what was
//! committed when it started), and:
//! - a write to a package first locks the package's row (`lock_package`): writes to
//!   one package take turns, and each reads the package as the previous one left it.
//!   Nothing is a shared document read and written back: packuments are built from
//!   rows, so concurrent publishes of different versions never lose one another;
//! - a new package's folded name is locked (an advisory lock), so of two first
//!   publishes of `foo` (or of `foo` and `Foo`) the second sees the first's package;
//! - unique constraints decide the rest: the same version twice, and one wins, the
//!   other gets `Conflict::VersionExists`, by the constraint's name (`rows`);
//! - the change-log rows are inserted last, under one advisory lock, so their
//!   sequence numbers become visible in order (see `changes`);
//! - a transaction that fails on a deadlock or a serialization failure (40P01,
//!   40001) is run again (`write`).
//!
//! `Durability` does not apply: whether a commit waits for the disk is the server's
//! `synchronous_commit`, which its operator sets.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};

use super::*;
use crate::registry::Role;
use crate::rows::*;
use gatehouse_npm::name::PackageName;

/// SQLite's `lower()`, which folds ASCII only: the search matches what it matches
/// there, whatever the database's locale.
macro_rules! ascii_lower {
    ($sql:literal) => {
        concat!(
            "translate(",
            $sql,
            ", 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
        )
    };
}

/// A JSON value as SQLite's `json_extract` gives it: a string unquoted, `null` as
/// NULL, anything else as its JSON text.
macro_rules! json_extract {
    ($json:literal) => {
        concat!(
            "CASE json_typeof(",
            $json,
            ") WHEN 'string' THEN ",
            $json,
            " #>> '{}' WHEN 'null' THEN NULL ELSE (",
            $json,
            ")::text END"
        )
    };
}

mod advisories;
mod audit;
mod changes;
mod claims;
mod journal;
mod packages;
mod policies;
mod registries;
mod sessions;
mod tables;
mod tokens;
mod trust;
mod upstreams;
mod users;

#[cfg(test)]
mod tests;

#[cfg(test)]
use changes::lock_change_log;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The pool size when the configuration names none.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

type Tx<'c> = sqlx::Transaction<'c, sqlx::Postgres>;

pub struct PostgresStore {
    pool: PgPool,
    /// Marks the change-log rows this store writes (see `Change::own`).
    writer_id: String,
    /// Other processes' changes, from a `LISTEN` started on first use.
    wakeups: std::sync::OnceLock<std::sync::Arc<tokio::sync::Notify>>,
}

impl PoolStats for PostgresStore {
    fn pool_use(&self) -> Vec<PoolUse> {
        vec![PoolUse {
            name: "postgres",
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }]
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) with up to `max_connections`, and applies
    /// the migrations. sqlx's migrator holds an advisory lock while it runs, so
    /// processes starting at once on an empty database migrate it once.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)?.application_name("gatehouse");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            // A request waits this long for a connection (the database restarting, the
            // pool exhausted) before it is answered 503: a client retries sooner than
            // a load balancer gives up on it.
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(PostgresStore {
            pool,
            writer_id: format!("{:016x}", rand::random::<u64>()),
            wakeups: std::sync::OnceLock::new(),
        })
    }

    /// Closes the pool's connections (waiting for those in use to come back).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs `attempt` (one transaction, begun and committed inside) until it neither
    /// deadlocks nor fails to serialize, a few times at most.
    async fn write<'a, T: Send + 'a>(
        &'a self,
        mut attempt: impl FnMut() -> BoxFuture<'a, StoreResult<T>> + Send + 'a,
    ) -> StoreResult<T> {
        const ATTEMPTS: u64 = 5;
        let mut tries = 1;
        loop {
            match attempt().await {
                Err(e) if tries < ATTEMPTS && is_transient(&e) => {
                    // A short random pause, so the transactions that collided part.
                    let pause = tries * 10 + rand::random::<u64>() % 20;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    tries += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn begin(&self) -> StoreResult<Tx<'static>> {
        Ok(self.pool.begin().await?)
    }

    /// Writes the transaction's change-log rows, then commits.
    async fn commit(&self, tx: Tx<'_>, changes: &[Logged<'_>]) -> StoreResult<()> {
        changes::commit(tx, &self.writer_id, changes).await
    }
}

/// A deadlock or serialization failure: running the transaction again may succeed.
fn is_transient(err: &StoreError) -> bool {
    let StoreError::Database(cause) = err else {
        return false;
    };
    cause
        .downcast_ref::<sqlx::Error>()
        .and_then(|e| e.as_database_error())
        .and_then(|db| db.code())
        .is_some_and(|code| code == "40001" || code == "40P01")
}

/// A change-log entry, written when its transaction commits.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Logged<'a> {
    /// One package; its registry and name are read from its row.
    Package(PackageId),
    Named {
        kind: &'static str,
        registry: Option<RegistryId>,
        name: Option<&'a str>,
    },
}

impl Logged<'_> {
    fn kind(kind: &'static str, registry: Option<RegistryId>) -> Self {
        Logged::Named {
            kind,
            registry,
            name: None,
        }
    }
}

/// What an advisory lock (`pg_advisory_xact_lock(class, key)`, held until the
/// transaction ends) serializes. The two-key form has a key space of its own, apart
/// from the one-key locks (sqlx's migrator takes one of those).
#[derive(Debug, Clone, Copy)]
#[repr(i32)]
enum Lock {
    /// Inserting into `changes` (see `changes`).
    ChangeLog = 0x6761_7401,
    /// Creating a package: keyed by registry and folded name.
    PackageName = 0x6761_7402,
    /// Importing advisories (one database for every registry).
    Advisories = 0x6761_7403,
    /// Recording a registry's decisions: keyed by registry.
    Decisions = 0x6761_7404,
}

async fn advisory_lock(tx: &mut Tx<'_>, lock: Lock, key: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(lock as i32)
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Locks a package's row for the rest of the transaction (the same lock its `UPDATE`
/// takes, which leaves inserts referring to it free); false when it does not exist.
async fn lock_package(tx: &mut Tx<'_>, package: PackageId) -> StoreResult<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM packages WHERE id = $1 FOR NO KEY UPDATE")
        .bind(package.0)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(found.is_some())
}

/// Locks a registry's row, for writes that read and rewrite its lists (upstreams).
async fn lock_registry(tx: &mut Tx<'_>, registry: RegistryId) -> StoreResult<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM registries WHERE id = $1 FOR NO KEY UPDATE")
        .bind(registry.0)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(found.is_some())
}

/// The `SET` list that copies the search fields of the version `latest` points at
/// onto the package row (as SQLite's `search_fields_from_latest!`).
const SEARCH_FIELDS_FROM_LATEST: &str = concat!(
    "description = (SELECT ",
    json_extract!("(v.manifest::json -> 'description')"),
    " FROM versions v JOIN dist_tags t ON t.package_id = v.package_id AND t.version = v.version
      WHERE t.package_id = packages.id AND t.tag = 'latest'),
     keywords = (SELECT ",
    json_extract!("(v.manifest::json -> 'keywords')"),
    " FROM versions v JOIN dist_tags t ON t.package_id = v.package_id AND t.version = v.version
      WHERE t.package_id = packages.id AND t.tag = 'latest')"
);

async fn insert_audit<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    at: Millis,
    entry: &AuditEntry,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, registry, package, version, detail, client_addr)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(at)
    .bind(&entry.actor)
    .bind(entry.action.as_str())
    .bind(&entry.registry)
    .bind(&entry.package)
    .bind(&entry.version)
    .bind(&entry.detail)
    .bind(&entry.client_addr)
    .execute(executor)
    .await?;
    Ok(())
}
