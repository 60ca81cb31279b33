//! Durable publishes with one fsync instead of three.
//!
//! Writing a blob durably takes two fsyncs (the file, then its directory) before the
//! metadata commit that refers to it takes a third. For tarballs up to `MAX_BYTES`,
//! admission writes the blob file without an fsync and commits the tarball's bytes to
//! the blob journal (a table) together with the version, so the commit's one fsync
//! makes both durable. A background task then makes the journaled files durable, many
//! at a time (`BlobStore::sync`), and deletes their rows; at start-up, `recover` makes
//! the blobs of rows left behind durable, rewriting the files a crash lost.
//!
//! The invariant: a committed blob is always durable in its file or in the journal. A
//! file is in place before the commit that journals it, and rows are deleted only up
//! to the newest row read before the sync began. The task syncs every row, whichever
//! process wrote it: rows a CLI command leaves behind go with the server's next sync.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::store::blobs::{BlobError, BlobKey, Blobs};
use crate::store::{JournaledBlob, Meta, StoreError};

/// Larger tarballs are written durably in place: for them the fsyncs are a small share
/// of the work, and their bytes would swell the database's log.
pub const MAX_BYTES: usize = 1024 * 1024;

/// How long the task gathers commits before a sync: each sync costs fsyncs and a
/// commit of its own, which a busy registry's publishes then share.
const GATHER: std::time::Duration = std::time::Duration::from_millis(500);

/// How long the task waits before trying again after a failure.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("journal row {0} has no bytes")]
    Missing(i64),
}

/// The handle admission uses to tell the sync task that rows were committed.
pub struct BlobJournal {
    wake: Arc<Notify>,
}

impl BlobJournal {
    /// Starts the task that syncs journaled blobs. Runs until the process ends.
    pub fn start(meta: Meta, blobs: Blobs) -> Self {
        let wake = Arc::new(Notify::new());
        let woken = Arc::clone(&wake);
        tokio::spawn(async move {
            loop {
                // A wake-up during a sync is kept, so commits made meanwhile form the next batch.
                woken.notified().await;
                tokio::time::sleep(GATHER).await;
                if let Err(e) = sync_journaled(&meta, &blobs).await {
                    tracing::error!(error = %e, "cannot make journaled blobs durable; trying again");
                    tokio::time::sleep(RETRY).await;
                    woken.notify_one();
                }
            }
        });
        BlobJournal { wake }
    }

    /// A version whose blob is journaled was committed.
    pub fn committed(&self) {
        self.wake.notify_one();
    }
}

/// Makes the files of every journaled blob durable and deletes their rows.
async fn sync_journaled(meta: &Meta, blobs: &Blobs) -> Result<(), JournalError> {
    let rows = meta.journaled_blobs().await?;
    let Some(last) = rows.last() else {
        return Ok(());
    };
    let keys = rows
        .iter()
        .map(|row| BlobKey::parse_hex(&row.sha512_hex))
        .collect::<Result<Vec<_>, _>>()?;
    if let Err(e) = blobs.sync(&keys).await {
        tracing::warn!(error = %e, "cannot sync journaled blobs; rewriting them from the journal");
        restore(meta, blobs, &rows).await?;
    }
    meta.forget_journaled(last.id).await?;
    Ok(())
}

/// Start-up: makes the blobs of rows left behind (by a crash, or a stop before the
/// task's next sync) durable, rewriting the files a crash lost from the journal.
/// Returns how many rows there were.
pub async fn recover(meta: &Meta, blobs: &Blobs) -> Result<usize, JournalError> {
    let rows = meta.journaled_blobs().await?;
    let Some(last) = rows.last() else {
        return Ok(0);
    };
    restore(meta, blobs, &rows).await?;
    meta.forget_journaled(last.id).await?;
    tracing::info!(blobs = rows.len(), "made the blobs left in the journal durable");
    Ok(rows.len())
}

/// Stores each row's bytes durably: `put` keeps a file that holds them (and syncs
/// it) and rewrites one that does not.
async fn restore(meta: &Meta, blobs: &Blobs, rows: &[JournaledBlob]) -> Result<(), JournalError> {
    for row in rows {
        let key = BlobKey::parse_hex(&row.sha512_hex)?;
        let bytes = meta
            .journaled_bytes(row.id)
            .await?
            .ok_or(JournalError::Missing(row.id))?;
        blobs.put(&key, Bytes::from(bytes)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use sha2::{Digest as _, Sha512};

    use super::*;
    use crate::config::Durability;
    use crate::registry::RegistryName;
    use crate::store::blobs::{FsBlobStore, Written};
    use crate::store::sqlite::SqliteStore;
    use crate::store::test_support::journaled_version;
    use crate::store::{PackageId, RegistryId, StoreError};

    async fn stores(dir: &Path) -> (Meta, Blobs, RegistryId) {
        let meta: Meta = Arc::new(
            SqliteStore::open(&dir.join("db.sqlite"), Durability::Full)
                .await
                .expect("metadata store"),
        );
        let blobs: Blobs = Arc::new(
            FsBlobStore::open(&dir.join("blobs"), Durability::Full)
                .await
                .expect("blob store"),
        );
        let name = RegistryName::parse("test").expect("registry name");
        let registry = meta.create_registry(&name, false).await.expect("registry");
        (meta, blobs, registry.id)
    }

    /// Writes the blob the way admission does and commits a version that journals it.
    async fn publish(
        meta: &Meta,
        blobs: &Blobs,
        registry: RegistryId,
        known_package: Option<PackageId>,
        version: &str,
    ) -> Result<(BlobKey, Bytes, PackageId), StoreError> {
        let tarball = Bytes::from(format!("the tarball of {version}"));
        let key = BlobKey::from_bytes(Sha512::digest(&tarball).into());
        let written = blobs.put_unsynced(&key, tarball.clone()).await.expect("blob written");
        assert_eq!(written, Written::NeedsSync);
        let new = journaled_version(registry, "journaled", version, &tarball, known_package);
        let inserted = meta.insert_version(&new).await?;
        Ok((key, tarball, inserted.package_id))
    }

    fn blob_path(dir: &Path, key: &BlobKey) -> std::path::PathBuf {
        let hex = key.to_hex();
        dir.join("blobs/sha512").join(&hex[0..2]).join(&hex[2..4]).join(hex)
    }

    #[tokio::test]
    async fn start_up_rewrites_the_blobs_a_power_loss_took() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (meta, blobs, registry) = stores(dir.path()).await;
        // The first version creates the package; the second takes the one-trip path.
        let (first, first_bytes, package) = publish(&meta, &blobs, registry, None, "1.0.0").await.expect("first");
        let (second, second_bytes, _) = publish(&meta, &blobs, registry, Some(package), "1.0.1")
            .await
            .expect("second");
        assert_eq!(meta.journaled_blobs().await.expect("rows").len(), 2);

        // A refused version leaves no row behind, and the writer connection still works.
        let refused = publish(&meta, &blobs, registry, Some(package), "1.0.1").await;
        assert!(
            matches!(refused, Err(StoreError::Conflict("version exists"))),
            "{refused:?}"
        );
        assert_eq!(meta.journaled_blobs().await.expect("rows").len(), 2);

        // What a power loss can leave of files written without fsync: nothing, or an
        // empty file under the right name.
        std::fs::File::create(blob_path(dir.path(), &first)).expect("truncate");
        std::fs::remove_file(blob_path(dir.path(), &second)).expect("remove");

        assert_eq!(recover(&meta, &blobs).await.expect("recover"), 2);
        assert_eq!(blobs.read(&first).await.expect("read"), Some(first_bytes));
        assert_eq!(blobs.read(&second).await.expect("read"), Some(second_bytes));
        assert!(meta.journaled_blobs().await.expect("rows").is_empty());
        assert_eq!(recover(&meta, &blobs).await.expect("recover again"), 0);
    }

    #[tokio::test]
    async fn the_sync_task_empties_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (meta, blobs, registry) = stores(dir.path()).await;
        let journal = BlobJournal::start(meta.clone(), blobs.clone());
        let (key, bytes, _) = publish(&meta, &blobs, registry, None, "2.0.0").await.expect("publish");
        journal.committed();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !meta.journaled_blobs().await.expect("rows").is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "the journal was not emptied");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(blobs.read(&key).await.expect("read"), Some(bytes));
    }
}
