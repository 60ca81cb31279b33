//! Writing new versions of packages that exist, with group commit.
//!
//! A version is one batch of statements (`record_version!`). Each trip to the
//! connection's thread costs thread hand-offs, so the writer task sends a whole group
//! in as few trips as it can: `BEGIN`, up to `PER_TRIP` versions and `COMMIT` in one.
//! Versions that arrive while a commit is under way wait for the next one and share
//! it, so one fsync serves many publishes. Each version sits in a savepoint: a refused
//! one (the version exists) is undone alone, found by where its trip stopped, and the
//! rest of the group goes on in the same transaction.

use std::sync::LazyLock;

use futures_util::StreamExt;
use sqlx::{Executor, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::*;

/// Everything a new version writes once its package row exists. Parameters: $1
/// package id, $2 version, $3 release key, $4 manifest, $5 blob sha512, $6 blob size,
/// $7 published at, $8 publisher, $9 deprecated, $10 source, $11 dist-tags (a JSON
/// array), $12 claim `latest` if the package has none, $13 now; the audit row: $14
/// actor, $15 action, $16 registry, $17 package, $18 version, $19 detail, $20 client
/// address; $21 the tarball for the blob journal, or NULL; $22 the tarball's facts; $23 runs install scripts, $24 attested, $25 the
/// attestations served for it (JSON), or NULL.
macro_rules! record_version {
    () => {
        concat!(
            "INSERT INTO versions (package_id, version, release_key, manifest, blob_sha512, blob_size,
                                   published_at, publisher, deprecated, source, facts, install_scripts, attested,
                                   attestations)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $22, $23, $24, $25);
             INSERT INTO dist_tags (package_id, tag, version) SELECT $1, value, $2 FROM json_each($11) WHERE true
             ON CONFLICT (package_id, tag) DO UPDATE SET version = excluded.version;
             INSERT INTO dist_tags (package_id, tag, version) SELECT $1, 'latest', $2 WHERE $12
             ON CONFLICT (package_id, tag) DO NOTHING;
             UPDATE packages SET rev = rev + 1, modified_at = $13, ",
            search_fields_from_latest!(),
            " WHERE id = $1;
             INSERT INTO changes (kind, registry_id, name, at, writer)
             SELECT 'package', registry_id, name, $13, (SELECT id FROM temp.writer_identity)
             FROM packages WHERE id = $1;
             INSERT INTO audit_log (at, actor, action, registry, package, version, detail, client_addr)
             VALUES ($13, $14, $15, $16, $17, $18, $19, $20);
             INSERT INTO blob_journal (sha512, bytes) SELECT $5, $21 WHERE $21 IS NOT NULL;"
        )
    };
}

/// A version inside a group's transaction: a refused one is undone alone.
const IN_GROUP: &str = concat!("SAVEPOINT version; ", record_version!(), " RELEASE version;");
/// `IN_GROUP`'s statements and parameters: a trip holds several versions, renumbered,
/// and where it stopped tells whose statement failed.
const STATEMENTS_PER_VERSION: usize = 9;
const PARAMS_PER_VERSION: usize = 25;

/// At most this many versions share a commit.
const MAX_GROUP: usize = 64;
/// At most this many versions go in one trip: every trip shape is a prepared
/// statement the connection keeps, so the shapes are few.
const PER_TRIP: usize = 8;

/// The statements of one trip: `versions` times `IN_GROUP`, opening the transaction
/// and committing it when asked.
fn trip_sql(opens: bool, versions: usize, commits: bool) -> &'static str {
    static SHAPES: LazyLock<Vec<String>> = LazyLock::new(|| {
        let mut shapes = Vec::with_capacity(4 * PER_TRIP);
        for opens in [false, true] {
            for commits in [false, true] {
                for versions in 1..=PER_TRIP {
                    let mut sql = String::from(if opens { "BEGIN IMMEDIATE; " } else { "" });
                    for i in 0..versions {
                        sql.push_str(&renumbered(IN_GROUP, i * PARAMS_PER_VERSION));
                        sql.push(' ');
                    }
                    if commits {
                        sql.push_str("COMMIT;");
                    }
                    shapes.push(sql);
                }
            }
        }
        shapes
    });
    let shape = (usize::from(opens) * 2 + usize::from(commits)) * PER_TRIP + versions.clamp(1, PER_TRIP) - 1;
    &SHAPES[shape]
}

/// `sql` with every parameter `$n` turned into `$(n + shift)`.
fn renumbered(sql: &str, shift: usize) -> String {
    let mut out = String::with_capacity(sql.len() + sql.len() / 16);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + shift).to_string()),
            Err(_) => out.push_str(&rest[..digits]), // `$` in a JSON path
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

pub(super) type Query = sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'static>>;

/// `record_version!`'s parameters for one version, checked before any is bound.
pub(super) struct VersionParams<'a> {
    package: PackageId,
    new: &'a NewVersion,
    tags: String,
    size: i64,
}

impl<'a> VersionParams<'a> {
    pub(super) fn new(package: PackageId, new: &'a NewVersion) -> StoreResult<Self> {
        Ok(VersionParams {
            package,
            new,
            tags: serde_json::to_string(&new.tags).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            size: i64::try_from(new.blob.size).map_err(|_| StoreError::Corrupt("blob too large".into()))?,
        })
    }

    /// Binds the parameters, owned: the query runs in the writer task.
    pub(super) fn bind(&self, query: Query, now: Millis) -> Query {
        let (new, audit) = (self.new, &self.new.audit);
        query
            .bind(self.package.0)
            .bind(new.version.clone())
            .bind(new.release_key.clone())
            .bind(new.manifest.clone())
            .bind(new.blob.sha512_hex.clone())
            .bind(self.size)
            .bind(new.published_at.unwrap_or(now))
            .bind(new.publisher_name.clone())
            .bind(new.deprecated.clone())
            .bind(new.source.clone())
            .bind(self.tags.clone())
            .bind(new.claim_latest)
            .bind(now)
            .bind(audit.actor.clone())
            .bind(audit.action.as_str())
            .bind(audit.registry.clone())
            .bind(audit.package.clone())
            .bind(audit.version.clone())
            .bind(audit.detail.clone())
            .bind(audit.client_addr.clone())
            .bind(new.journal.as_ref().map(|bytes| bytes.to_vec()))
            .bind(new.facts.clone())
            .bind(new.install_scripts)
            .bind(new.attested)
            .bind(new.attestations.clone())
    }
}

/// The only unique key `record_version!` can hit is the version's (tags are upserts).
pub(super) fn conflict(err: sqlx::Error) -> StoreError {
    match StoreError::from(err) {
        StoreError::Conflict(_) => Conflict::VersionExists.into(),
        other => other,
    }
}

/// A version waiting for the writer task.
struct Pending {
    package: PackageId,
    new: NewVersion,
    done: oneshot::Sender<StoreResult<()>>,
}

/// The handle to the task that writes new versions. The task owns each group from
/// start to commit, so a caller that goes away cannot leave a transaction open.
pub(super) struct VersionWriter {
    pending: mpsc::UnboundedSender<Pending>,
}

impl VersionWriter {
    pub(super) fn start(writer: SqlitePool) -> Self {
        let (pending, mut arrivals) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(MAX_GROUP);
            while arrivals.recv_many(&mut group, MAX_GROUP).await > 0 {
                let outcomes = write_group(&writer, &group).await;
                for (pending, outcome) in group.drain(..).zip(outcomes) {
                    // The caller may have gone; the version is written either way.
                    let _ = pending.done.send(outcome);
                }
            }
        });
        VersionWriter { pending }
    }

    /// Writes a new version of an existing package; returns once it is committed.
    pub(super) async fn record(&self, package: PackageId, new: &NewVersion) -> StoreResult<()> {
        let (done, outcome) = oneshot::channel();
        let pending = Pending {
            package,
            new: new.clone(),
            done,
        };
        let stopped = || StoreError::Database("the version writer has stopped".into());
        self.pending.send(pending).map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

/// One transaction for the group, in as few trips as `PER_TRIP` allows (one for up to
/// eight versions); one outcome per version, in order.
async fn write_group(writer: &SqlitePool, group: &[Pending]) -> Vec<StoreResult<()>> {
    let params: Vec<_> = group.iter().map(|p| VersionParams::new(p.package, &p.new)).collect();
    // Versions that cannot be bound are refused alone; the rest are written.
    let writable: Vec<&VersionParams> = params.iter().filter_map(|p| p.as_ref().ok()).collect();
    let written = match writer.acquire().await {
        Ok(_) if writable.is_empty() => Ok(Vec::new()),
        Ok(mut conn) => write_versions(&mut conn, &writable).await,
        Err(e) => Err(e.into()),
    };
    let mut written = match written {
        Ok(outcomes) => outcomes.into_iter(),
        Err(e) => {
            return group
                .iter()
                .map(|_| Err(StoreError::Database(e.to_string().into())))
                .collect();
        }
    };
    params
        .into_iter()
        .map(|p| match p {
            Ok(_) => written.next().unwrap_or(Err(StoreError::Database("no outcome".into()))),
            Err(e) => Err(e),
        })
        .collect()
}

/// Writes the versions in one transaction. `Err` when the transaction failed (rolled
/// back: nothing was written); otherwise each version's outcome, a refusal undone alone.
async fn write_versions(
    conn: &mut SqliteConnection,
    versions: &[&VersionParams<'_>],
) -> StoreResult<Vec<StoreResult<()>>> {
    let now = now_millis();
    let mut outcomes = Vec::with_capacity(versions.len());
    let mut open = false;
    while outcomes.len() < versions.len() {
        let trip = &versions[outcomes.len()..versions.len().min(outcomes.len() + PER_TRIP)];
        let commits = outcomes.len() + trip.len() == versions.len();
        let query = trip
            .iter()
            .fold(sqlx::query(trip_sql(!open, trip.len(), commits)), |query, version| {
                version.bind(query, now)
            });
        let opened = usize::from(!open);
        open = true;
        let Err((done, e)) = run_trip(conn, query).await else {
            outcomes.extend(trip.iter().map(|_| Ok(())));
            continue;
        };
        let failed_at = done.saturating_sub(opened) / STATEMENTS_PER_VERSION;
        match conflict(e) {
            StoreError::Conflict(what) if failed_at < trip.len() => {
                outcomes.extend((0..failed_at).map(|_| Ok(())));
                outcomes.push(Err(StoreError::Conflict(what)));
                // A constraint undoes only its own statement; undo the rest of this version.
                let undo = if outcomes.len() == versions.len() {
                    "ROLLBACK TO version; RELEASE version; COMMIT"
                } else {
                    "ROLLBACK TO version; RELEASE version"
                };
                if let Err(e) = sqlx::query(undo).execute(&mut *conn).await {
                    return Err(roll_back(conn, e.into()).await);
                }
            }
            // Other errors (BEGIN, I/O, a full disk, COMMIT) may have ended the
            // transaction: give up the group.
            other => return Err(roll_back(conn, other).await),
        }
    }
    Ok(outcomes)
}

/// Runs a trip's statements; on failure, also says how many of them had completed.
async fn run_trip(conn: &mut SqliteConnection, query: Query) -> Result<(), (usize, sqlx::Error)> {
    let mut results = conn.fetch_many(query);
    let mut done = 0;
    while let Some(result) = results.next().await {
        match result {
            Ok(sqlx::Either::Left(_)) => done += 1,
            Ok(sqlx::Either::Right(_)) => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

/// Ends a failed transaction (harmlessly fails if it had not begun) and returns `cause`.
async fn roll_back(conn: &mut SqliteConnection, cause: StoreError) -> StoreError {
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    cause
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::registry::RegistryName;
    use crate::test_support::journaled_version;

    /// A store in a fresh directory (kept alive by the caller), with one registry.
    async fn store_with_registry() -> (tempfile::TempDir, SqliteStore, Registry) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("db.sqlite"), Durability::Full)
            .await
            .expect("store");
        let registry = store
            .create_registry(&RegistryName::parse("test").expect("name"), false)
            .await
            .expect("registry");
        (dir, store, registry)
    }

    #[test]
    fn each_version_in_a_trip_has_its_own_statements_and_parameters() {
        assert_eq!(IN_GROUP.matches(';').count(), STATEMENTS_PER_VERSION);
        assert_eq!(renumbered(IN_GROUP, 0), IN_GROUP);
        let params = |sql: &str| -> std::collections::BTreeSet<usize> {
            sql.split('$')
                .skip(1)
                .filter_map(|rest| rest[..rest.bytes().take_while(u8::is_ascii_digit).count()].parse().ok())
                .collect()
        };
        assert_eq!(params(IN_GROUP), (1..=PARAMS_PER_VERSION).collect());
        let second = renumbered(IN_GROUP, PARAMS_PER_VERSION);
        assert_eq!(
            params(&second),
            (PARAMS_PER_VERSION + 1..=2 * PARAMS_PER_VERSION).collect()
        );
        assert!(second.contains("'$.description'"), "JSON paths are left alone");
        let trip = trip_sql(true, 3, true);
        assert!(trip.starts_with("BEGIN IMMEDIATE;") && trip.ends_with("COMMIT;"));
        assert_eq!(params(trip), (1..=3 * PARAMS_PER_VERSION).collect());
        assert!(!trip_sql(false, PER_TRIP, false).contains("BEGIN"));
    }

    /// Refused versions, last in the first trip of a group and in the next, and alone
    /// at its end, are undone alone: every other version is written, and told so.
    #[tokio::test]
    async fn refused_versions_in_a_group_are_undone_alone() {
        let (_dir, store, registry) = store_with_registry().await;
        let version = |v: &str, package, attempt: &str| {
            let tarball = Bytes::from(format!("{v}, {attempt} attempt"));
            journaled_version(registry.id, "grouped", v, &tarball, package)
        };
        let package = store
            .insert_version(&version("1.0.0", None, "first"))
            .await
            .expect("first version")
            .package_id;
        let taken = ["1.0.8", "1.0.16", "1.0.17"];
        for v in taken {
            store
                .insert_version(&version(v, Some(package), "first"))
                .await
                .expect("taken");
        }

        // 17 versions in one transaction: trips of 8, 8 and 1 (each after a refusal).
        let group: Vec<Pending> = (1..=17)
            .map(|i| Pending {
                package,
                new: version(&format!("1.0.{i}"), Some(package), "second"),
                done: oneshot::channel().0,
            })
            .collect();
        let outcomes = write_group(&store.writer, &group).await;
        for (pending, outcome) in group.iter().zip(&outcomes) {
            match (taken.contains(&pending.new.version.as_str()), outcome) {
                (true, Err(StoreError::Conflict(Conflict::VersionExists))) | (false, Ok(())) => {}
                (_, other) => panic!("{}: {other:?}", pending.new.version),
            }
        }

        let record = store
            .package(registry.id, &PackageName::parse("grouped").expect("name"))
            .await
            .expect("read")
            .expect("package");
        assert_eq!(record.versions.len(), 18, "1.0.0 to 1.0.17, each once");
        assert_eq!(record.rev, 18, "one rev per written version");
        assert_eq!(store.journaled_blobs(0, 1000).await.expect("journal").len(), 18);
        // The refused versions kept their first bytes.
        let kept = record.versions.iter().find(|v| v.version == "1.0.8").expect("1.0.8");
        assert_eq!(kept.blob.sha512_hex, version("1.0.8", None, "first").blob.sha512_hex);
    }

    /// Every publish reads the `latest` version's manifest for the search fields: it is
    /// found by its number, not by scanning the package's versions.
    #[tokio::test]
    async fn the_latest_version_is_found_without_a_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("db.sqlite"), Durability::Full)
            .await
            .expect("store");
        let plan: Vec<String> = sqlx::query(concat!(
            "EXPLAIN QUERY PLAN UPDATE packages SET ",
            search_fields_from_latest!(),
            " WHERE id = 1"
        ))
        .fetch_all(&store.pool)
        .await
        .expect("plan")
        .iter()
        .map(|row| row.try_get("detail").expect("detail"))
        .collect();
        let versions: Vec<_> = plan.iter().filter(|step| step.starts_with("SEARCH v ")).collect();
        assert!(!versions.is_empty(), "{plan:?}");
        assert!(versions.iter().all(|step| step.contains("version=?")), "{plan:?}");
    }

    /// Many versions at once share commits; a refused one leaves the others written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn versions_sharing_a_commit_each_get_their_own_outcome() {
        let (_dir, store, registry) = store_with_registry().await;
        let store = Arc::new(store);
        let first = Bytes::from_static(b"1.0.0");
        let package = store
            .insert_version(&journaled_version(registry.id, "grouped", "1.0.0", &first, None))
            .await
            .expect("first version")
            .package_id;

        // 40 publishes of 20 versions: each version is sent twice, with different bytes.
        let attempts: Vec<_> = (0..40)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let version = format!("1.1.{}", i % 20);
                    let tarball = Bytes::from(format!("{version} attempt {i}"));
                    let new = journaled_version(registry.id, "grouped", &version, &tarball, Some(package));
                    (version, store.insert_version(&new).await)
                })
            })
            .collect();
        let mut won = std::collections::BTreeMap::new();
        for attempt in attempts {
            let (version, outcome) = attempt.await.expect("task");
            match outcome {
                Ok(_) => *won.entry(version).or_insert(0) += 1,
                Err(StoreError::Conflict(Conflict::VersionExists)) => {}
                Err(e) => panic!("{version}: {e}"),
            }
        }
        assert_eq!(won.len(), 20, "every version written: {won:?}");
        assert!(won.values().all(|&n| n == 1), "exactly one winner each: {won:?}");

        let record = store
            .package(registry.id, &PackageName::parse("grouped").expect("name"))
            .await
            .expect("read")
            .expect("package");
        assert_eq!(record.versions.len(), 21);
        assert_eq!(record.rev, 21, "one rev per written version");
        assert_eq!(store.journaled_blobs(0, 1000).await.expect("journal").len(), 21);
    }
}
