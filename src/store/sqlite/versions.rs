//! Writing new versions of packages that exist, with group commit.
//!
//! A version is one batch of statements (`record_version!`): one trip to the
//! connection's thread. Alone, it is its own transaction, so a publish costs one trip
//! and one commit. Versions that arrive while a commit is under way wait for the next
//! one and share it, each in a savepoint so that a refused one (the version exists)
//! does not undo the others: with many publishers, one fsync serves many publishes.

use tokio::sync::{mpsc, oneshot};

use super::*;

/// Everything a new version writes once its package row exists. Parameters: $1
/// package id, $2 version, $3 release key, $4 manifest, $5 blob sha512, $6 blob size,
/// $7 published at, $8 publisher, $9 deprecated, $10 source, $11 dist-tags (a JSON
/// array), $12 claim `latest` if the package has none, $13 now; the audit row: $14
/// actor, $15 action, $16 registry, $17 package, $18 version, $19 detail, $20 client
/// address; $21 the tarball for the blob journal, or NULL.
macro_rules! record_version {
    () => {
        concat!(
            "INSERT INTO versions (package_id, version, release_key, manifest, blob_sha512, blob_size,
                                   published_at, publisher, deprecated, source)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10);
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

/// A version alone: its own transaction, in one trip.
const ALONE: &str = concat!("BEGIN IMMEDIATE; ", record_version!(), " COMMIT;");
/// A version sharing a commit.
const IN_GROUP: &str = concat!("SAVEPOINT version; ", record_version!(), " RELEASE version;");

/// At most this many versions share a commit.
const MAX_GROUP: usize = 64;

pub(super) type Query = sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'static>>;

/// Binds `record_version!`'s parameters (owned: the query runs in the writer task).
pub(super) fn bind(query: Query, package: PackageId, new: &NewVersion, now: Millis) -> StoreResult<Query> {
    let tags = serde_json::to_string(&new.tags).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let size = i64::try_from(new.blob.size).map_err(|_| StoreError::Corrupt("blob too large".into()))?;
    let audit = &new.audit;
    Ok(query
        .bind(package.0)
        .bind(new.version.clone())
        .bind(new.release_key.clone())
        .bind(new.manifest.clone())
        .bind(new.blob.sha512_hex.clone())
        .bind(size)
        .bind(new.published_at.unwrap_or(now))
        .bind(new.publisher_name.clone())
        .bind(new.deprecated.clone())
        .bind(new.source.clone())
        .bind(tags)
        .bind(new.claim_latest)
        .bind(now)
        .bind(audit.actor.clone())
        .bind(audit.action)
        .bind(audit.registry.clone())
        .bind(audit.package.clone())
        .bind(audit.version.clone())
        .bind(audit.detail.clone())
        .bind(audit.client_addr.clone())
        .bind(new.journal.as_ref().map(|bytes| bytes.to_vec())))
}

/// The only unique key `record_version!` can hit is the version's (tags are upserts).
pub(super) fn conflict(err: sqlx::Error) -> StoreError {
    match StoreError::from(err) {
        StoreError::Conflict(_) => StoreError::Conflict("version exists"),
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
                let outcomes = match group.len() {
                    1 => vec![write_alone(&writer, &group[0]).await],
                    _ => write_group(&writer, &group).await,
                };
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

async fn write_alone(writer: &SqlitePool, pending: &Pending) -> StoreResult<()> {
    let query = bind(sqlx::query(ALONE), pending.package, &pending.new, now_millis())?;
    let mut conn = writer.acquire().await?;
    let result = query.execute(&mut *conn).await;
    if result.is_err() {
        // The batch stopped part-way (fails harmlessly if it stopped at BEGIN).
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    result.map(drop).map_err(conflict)
}

/// One transaction for the group; one outcome per version, in order.
async fn write_group(writer: &SqlitePool, group: &[Pending]) -> Vec<StoreResult<()>> {
    let failed_all = |e: &StoreError| group.iter().map(|_| Err(StoreError::Database(e.to_string()))).collect();
    let mut conn = match writer.acquire().await {
        Ok(conn) => conn,
        Err(e) => return failed_all(&e.into()),
    };
    if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
        return failed_all(&e.into());
    }
    let now = now_millis();
    let mut outcomes = Vec::with_capacity(group.len());
    for pending in group {
        let query = match bind(sqlx::query(IN_GROUP), pending.package, &pending.new, now) {
            Ok(query) => query,
            Err(e) => {
                outcomes.push(Err(e));
                continue;
            }
        };
        match query.execute(&mut *conn).await.map_err(conflict) {
            Ok(_) => outcomes.push(Ok(())),
            Err(StoreError::Conflict(what)) => {
                // A constraint undoes only its own statement; undo the rest of this version.
                if let Err(e) = sqlx::query("ROLLBACK TO version; RELEASE version")
                    .execute(&mut *conn)
                    .await
                {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    return failed_all(&e.into());
                }
                outcomes.push(Err(StoreError::Conflict(what)));
            }
            // Other errors (I/O, a full disk) may have ended the transaction: give up the group.
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                return failed_all(&e);
            }
        }
    }
    match sqlx::query("COMMIT").execute(&mut *conn).await {
        Ok(_) => outcomes,
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            failed_all(&e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::registry::RegistryName;
    use crate::store::test_support::journaled_version;

    /// Many versions at once share commits; a refused one leaves the others written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn versions_sharing_a_commit_each_get_their_own_outcome() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("db.sqlite"), Durability::Full)
                .await
                .expect("store"),
        );
        let registry = store
            .create_registry(&RegistryName::parse("test").expect("name"), false)
            .await
            .expect("registry");
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
                Err(StoreError::Conflict("version exists")) => {}
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
        assert_eq!(store.journaled_blobs().await.expect("journal").len(), 21);
    }
}
