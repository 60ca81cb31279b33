//! The embedded metadata store: SQLite in WAL mode through sqlx.
//!
//! Reads use a pool of connections; every write goes through one writer connection,
//! so this process's writers queue in order for it instead of polling SQLite's lock
//! (the busy timeout, which sleeps, is left for other processes such as the CLI).
//! Transactions are `BEGIN IMMEDIATE`, so a writer never fails on a stale read
//! snapshot. `synchronous = FULL` (the default `durability`) makes every acknowledged
//! commit survive a power loss.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::*;
use crate::Durability;
use crate::registry::Role;
use crate::rows::*;
use gatehouse_npm::name::PackageName;

/// The `SET` list that copies the search fields of the version `latest` points at onto
/// the package row. A macro so `record_version!` can `concat!` it.
macro_rules! search_fields_from_latest {
    () => {
        "description = (SELECT json_extract(v.manifest, '$.description') FROM versions v
                        JOIN dist_tags t ON t.package_id = v.package_id AND t.version = v.version
                        WHERE t.package_id = packages.id AND t.tag = 'latest'),
         keywords = (SELECT json_extract(v.manifest, '$.keywords') FROM versions v
                     JOIN dist_tags t ON t.package_id = v.package_id AND t.version = v.version
                     WHERE t.package_id = packages.id AND t.tag = 'latest')"
    };
}

// First: its `record_version!` is used by `packages`.
#[macro_use]
mod versions;
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

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    /// Readers (WAL: they never wait for the writer).
    pool: SqlitePool,
    /// The one connection that writes.
    writer: SqlitePool,
    /// Writes new versions of existing packages, with group commit.
    versions: versions::VersionWriter,
    /// Marks the change-log rows this store writes (in `temp.writer_identity` of the
    /// writer connection, so every insert into `changes` can read it).
    writer_id: String,
}

impl PoolStats for SqliteStore {
    fn pool_use(&self) -> Vec<PoolUse> {
        let pool_use = |name, pool: &SqlitePool| PoolUse {
            name,
            size: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            max: pool.options().get_max_connections(),
        };
        vec![pool_use("reader", &self.pool), pool_use("writer", &self.writer)]
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path, durability: Durability) -> StoreResult<Self> {
        // In WAL mode, FULL syncs the log at every commit; NORMAL only at checkpoints
        // (a crash of the process loses nothing; of the machine, the last commits).
        let synchronous = match durability {
            Durability::Full => SqliteSynchronous::Full,
            Durability::Process => SqliteSynchronous::Normal,
        };
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(StoreError::from)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        // sqlx's migrator locks nothing on SQLite: processes starting at once on a fresh
        // database would each apply the same migration. They take turns on a lock file
        // beside it (released when the file closes, by a crash too).
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".migrate-lock");
        let lock = tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)?;
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(|e| StoreError::Database(Box::new(e)))?
        .map_err(|e| StoreError::Database(Box::new(e)))?;
        let store = Self::connect(options).await;
        drop(lock);
        store
    }

    /// A fresh database in memory, gone when the store is dropped: for the tests of
    /// the parts above the store. Its connections share one in-memory database.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn open_in_memory() -> StoreResult<Self> {
        // Each parse names a new database; clones of the options share it.
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(StoreError::from)?
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        Self::connect(options).await
    }

    async fn connect(options: SqliteConnectOptions) -> StoreResult<Self> {
        let writer_id = format!("{:016x}", rand::random::<u64>());
        let identity = writer_id.clone();
        // An embedded connection cannot go stale, so the pools skip their ping before
        // each use: a trip to the connection's thread (a tenth of a publish).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                let identity = identity.clone();
                Box::pin(async move {
                    sqlx::query("CREATE TEMP TABLE IF NOT EXISTS writer_identity (id TEXT NOT NULL)")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("DELETE FROM temp.writer_identity")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("INSERT INTO temp.writer_identity (id) VALUES ($1)")
                        .bind(identity)
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .test_before_acquire(false)
            // The readers' page caches stay small (256 KiB, not SQLite's 2 MiB each): the
            // packument cache answers the reads that repeat, and the kernel keeps the
            // file's pages anyway. 8 MiB less of an idle server after seeding.
            .connect_with(options.pragma("cache_size", "-256"))
            .await?;
        Ok(SqliteStore {
            pool,
            versions: versions::VersionWriter::start(writer.clone()),
            writer,
            writer_id,
        })
    }

    /// Writes a consistent copy of the database at `source` to the new file `dest`
    /// (`VACUUM INTO`: one read snapshot, while writers go on).
    pub async fn backup_into(source: &Path, dest: &Path) -> StoreResult<()> {
        let options = SqliteConnectOptions::new()
            .filename(source)
            .busy_timeout(Duration::from_secs(30));
        let mut connection = sqlx::ConnectOptions::connect(&options).await?;
        let dest = dest
            .to_str()
            .ok_or_else(|| StoreError::Corrupt(format!("{} is not a UTF-8 path", dest.display())))?;
        sqlx::query("VACUUM INTO $1")
            .bind(dest)
            .execute(&mut connection)
            .await?;
        Ok(())
    }

    async fn write_tx(&self) -> StoreResult<sqlx::Transaction<'_, sqlx::Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Bumps `rev` and `modified_at`; with `expected_rev`, refuses a stale caller.
/// Upstream lists changed: every package of the registry may look different.
async fn registry_changed(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, registry: RegistryId) -> StoreResult<()> {
    log_change(&mut **tx, "registry", Some(registry)).await
}

async fn log_change<'e, E: sqlx::Executor<'e, Database = sqlx::Sqlite>>(
    executor: E,
    kind: &str,
    registry: Option<RegistryId>,
) -> StoreResult<()> {
    log_named_change(executor, kind, registry, None).await
}

async fn log_named_change<'e, E: sqlx::Executor<'e, Database = sqlx::Sqlite>>(
    executor: E,
    kind: &str,
    registry: Option<RegistryId>,
    name: Option<&str>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO changes (kind, registry_id, name, at, writer)
         VALUES ($1, $2, $4, $3, (SELECT id FROM temp.writer_identity))",
    )
    .bind(kind)
    .bind(registry.map(|r| r.0))
    .bind(now_millis())
    .bind(name)
    .execute(executor)
    .await?;
    Ok(())
}
