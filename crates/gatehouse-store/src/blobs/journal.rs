//! Durable publishes with one fsync instead of three, and no file write on the way.
//!
//! Writing a blob durably takes two fsyncs (the file, then its directory) before the
//! metadata commit that refers to it takes a third. For tarballs up to `MAX_BYTES`,
//! admission writes no file at all: it commits the tarball's bytes to the blob journal
//! (a table) together with the version, so the commit's one fsync makes both durable.
//! A background task then writes the journaled files, many at a time, makes them
//! durable (`BlobStore::sync`) and deletes their rows; until it has, reads of those
//! blobs are served from the journal. At start-up, `recover` does the same for rows
//! left behind.
//!
//! The invariant: a committed blob is always durable in its file or in the journal,
//! and readable from one of them. Rows are deleted only once their files are durable,
//! and readers look at the file, then the journal, then the file again (the task may
//! have written it and deleted the row in between). The task writes every row,
//! whichever process committed it: rows a CLI command leaves behind are picked up
//! within `IDLE_CHECK`, and served from the journal until then.

use std::time::Duration;

use bytes::Bytes;

use super::{BlobError, BlobKey, Blobs};

/// Larger tarballs are written durably in place: for them the fsyncs are a small share
/// of the work, and their bytes would swell the database's log.
pub const MAX_BYTES: usize = 1024 * 1024;

/// How long the task gathers commits before writing their files: each round costs a
/// sync and a commit of its own, which a busy registry's publishes then share.
const GATHER: Duration = Duration::from_millis(500);

/// How often the task looks for rows nobody told it about (another process's).
const IDLE_CHECK: Duration = Duration::from_secs(60);

/// How long the task waits before trying again after a failure.
const RETRY: Duration = Duration::from_secs(1);

/// Rows read at a time (at most `MAX_BYTES` each), and in one round.
const PAGE_ROWS: u32 = 16;
const ROUND_ROWS: usize = 1024;

/// Starts the task that writes journaled blobs. Runs until the process ends.
pub(super) fn start(blobs: Blobs) {
    tokio::spawn(async move {
        let woken = blobs.wake.clone();
        loop {
            // A wake-up during a round is kept, so commits made meanwhile form the next one.
            let _ = tokio::time::timeout(IDLE_CHECK, woken.notified()).await;
            tokio::time::sleep(GATHER).await;
            match write_journaled(&blobs).await {
                Ok(Round::More(_)) => woken.notify_one(),
                Ok(Round::Done(_)) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot write journaled blobs; trying again");
                    tokio::time::sleep(RETRY).await;
                    woken.notify_one();
                }
            }
        }
    });
}

/// What a round of the task did.
#[derive(Debug, PartialEq, Eq)]
enum Round {
    /// Wrote (and deleted) this many rows: every row there was.
    Done(usize),
    /// Wrote this many rows, as many as a round takes; there may be more.
    More(usize),
}

/// Writes the files of journaled blobs (keeping those already in place), makes them
/// durable and deletes their rows.
async fn write_journaled(blobs: &Blobs) -> Result<Round, BlobError> {
    let (mut keys, mut newest) = (Vec::new(), 0);
    loop {
        let rows = blobs.journal.journaled_blobs(newest, PAGE_ROWS).await?;
        let Some(last) = rows.last() else { break };
        newest = last.id;
        let page = rows
            .into_iter()
            .map(|row| Ok((BlobKey::parse_hex(&row.sha512_hex)?, Bytes::from(row.bytes))))
            .collect::<Result<Vec<_>, BlobError>>()?;
        keys.extend(page.iter().map(|(key, _)| key.clone()));
        blobs.store.put_unsynced(page).await?;
        if keys.len() >= ROUND_ROWS {
            break;
        }
    }
    if keys.is_empty() {
        return Ok(Round::Done(0));
    }
    blobs.store.sync(&keys).await?;
    blobs.journal.forget_journaled(newest).await?;
    Ok(if keys.len() >= ROUND_ROWS {
        Round::More(keys.len())
    } else {
        Round::Done(keys.len())
    })
}

/// Start-up: writes and syncs the files of rows left behind (by a crash, or a stop
/// before the task's next round), rewriting those a crash lost or cut short. Returns
/// how many rows there were.
pub async fn recover(blobs: &Blobs) -> Result<usize, BlobError> {
    let mut total = 0;
    loop {
        match write_journaled(blobs).await? {
            Round::More(rows) => total += rows,
            Round::Done(rows) => {
                total += rows;
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(blobs = total, "wrote the blobs left in the journal");
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use sha2::{Digest as _, Sha512};

    use super::*;
    use crate::blobs::FsBlobStore;
    use crate::registry::RegistryName;
    use crate::sqlite::SqliteStore;
    use crate::test_support::journaled_version;
    use crate::{Conflict, Durability, Meta, PackageId, RegistryId, StoreError};

    /// The stores, and their blobs without the journal's task (the tests run its rounds).
    async fn stores(dir: &Path) -> (Meta, Blobs, RegistryId) {
        let meta: Meta = Arc::new(
            SqliteStore::open(&dir.join("db.sqlite"), Durability::Full)
                .await
                .expect("metadata store"),
        );
        let store = FsBlobStore::open(&dir.join("blobs"), Durability::Full)
            .await
            .expect("blob store");
        let blobs = Blobs::idle(Arc::new(store), meta.clone());
        assert!(blobs.journals(1024), "admission journals small blobs of this store");
        let name = RegistryName::parse("test").expect("registry name");
        let registry = meta.create_registry(&name, false).await.expect("registry");
        (meta, blobs, registry.id)
    }

    async fn read(blobs: &Blobs, key: &BlobKey) -> Option<Bytes> {
        blobs.read(key).await.expect("read")
    }

    /// Commits a version whose blob is journaled, as admission does: no file written.
    async fn publish(
        meta: &Meta,
        registry: RegistryId,
        known_package: Option<PackageId>,
        version: &str,
    ) -> Result<(BlobKey, Bytes, PackageId), StoreError> {
        let tarball = Bytes::from(format!("the tarball of {version}"));
        let key = BlobKey::from_bytes(Sha512::digest(&tarball).into());
        let new = journaled_version(registry, "journaled", version, &tarball, known_package);
        let inserted = meta.insert_version(&new).await?;
        Ok((key, tarball, inserted.package_id))
    }

    fn blob_path(dir: &Path, key: &BlobKey) -> std::path::PathBuf {
        let hex = key.to_hex();
        dir.join("blobs/sha512").join(&hex[0..2]).join(&hex[2..4]).join(hex)
    }

    async fn journal_rows(meta: &Meta) -> usize {
        meta.journaled_blobs(0, 1000).await.expect("rows").len()
    }

    #[tokio::test]
    async fn a_blob_is_read_from_the_journal_until_its_file_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (meta, blobs, registry) = stores(dir.path()).await;
        let (key, bytes, _) = publish(&meta, registry, None, "1.0.0").await.expect("publish");
        assert!(!blob_path(dir.path(), &key).exists(), "no file written on the way");
        let stream = blobs.open(&key).await.expect("open").expect("from the journal");
        assert_eq!((stream.len, stream.etag.clone()), (bytes.len() as u64, key.etag()));
        assert_eq!(stream.into_bytes().await.expect("bytes"), bytes);
        assert_eq!(blobs.count().await.expect("count"), 1);

        assert_eq!(write_journaled(&blobs).await.expect("round"), Round::Done(1));
        assert_eq!(std::fs::read(blob_path(dir.path(), &key)).expect("file"), bytes);
        assert_eq!(journal_rows(&meta).await, 0);
        let stream = blobs.open(&key).await.expect("open").expect("from the file");
        assert_eq!((stream.len, stream.etag), (bytes.len() as u64, key.etag()));
        assert_eq!(read(&blobs, &key).await, Some(bytes));
        assert_eq!(blobs.count().await.expect("count"), 1);

        let unknown = BlobKey::from_bytes(Sha512::digest(b"never published").into());
        assert!(blobs.open(&unknown).await.expect("open").is_none());
    }

    #[tokio::test]
    async fn start_up_writes_the_blobs_left_in_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (meta, blobs, registry) = stores(dir.path()).await;
        // The first version creates the package; the second takes the one-trip path.
        let (first, first_bytes, package) = publish(&meta, registry, None, "1.0.0").await.expect("first");
        let (second, second_bytes, _) = publish(&meta, registry, Some(package), "1.0.1").await.expect("second");
        assert_eq!(journal_rows(&meta).await, 2);

        // A refused version leaves no row behind, and the writer connection still works.
        let refused = publish(&meta, registry, Some(package), "1.0.1").await;
        assert!(
            matches!(refused, Err(StoreError::Conflict(Conflict::VersionExists))),
            "{refused:?}"
        );
        assert_eq!(journal_rows(&meta).await, 2);

        // What a power loss during a round can leave of a file: an empty one under the
        // right name. It is rewritten, not trusted.
        let first_path = blob_path(dir.path(), &first);
        std::fs::create_dir_all(first_path.parent().expect("parent")).expect("dirs");
        std::fs::File::create(&first_path).expect("empty file");

        assert_eq!(recover(&blobs).await.expect("recover"), 2);
        assert_eq!(read(&blobs, &first).await, Some(first_bytes));
        assert_eq!(read(&blobs, &second).await, Some(second_bytes));
        assert_eq!(journal_rows(&meta).await, 0);
        assert_eq!(recover(&blobs).await.expect("recover again"), 0);
    }

    #[tokio::test]
    async fn the_task_writes_the_files_and_empties_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (meta, idle, registry) = stores(dir.path()).await;
        let blobs = Blobs::start(idle.store.clone(), meta.clone());
        let (key, bytes, _) = publish(&meta, registry, None, "2.0.0").await.expect("publish");
        blobs.committed();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while journal_rows(&meta).await > 0 {
            assert!(tokio::time::Instant::now() < deadline, "the journal was not emptied");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(blob_path(dir.path(), &key).exists());
        assert_eq!(read(&blobs, &key).await, Some(bytes));
    }

    /// More rows than a round takes: the rounds go on until every one is written.
    #[tokio::test]
    async fn rounds_continue_until_every_row_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (meta, blobs, registry) = stores(dir.path()).await;
        let (_, _, package) = publish(&meta, registry, None, "0.0.0").await.expect("first");
        for i in 0..ROUND_ROWS {
            publish(&meta, registry, Some(package), &format!("1.0.{i}"))
                .await
                .expect("publish");
        }
        assert_eq!(write_journaled(&blobs).await.expect("round"), Round::More(ROUND_ROWS));
        assert_eq!(journal_rows(&meta).await, 1);
        assert_eq!(recover(&blobs).await.expect("recover"), 1);
        assert_eq!(journal_rows(&meta).await, 0);
    }
}
