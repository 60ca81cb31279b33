//! Content-addressed tarball storage. A blob's only name is the sha512 of its bytes:
//! no path or key is ever built from a package name, version or file name.
//!
//! [`BlobStore`] is a backend (files, or an S3-compatible bucket). [`Blobs`] is what
//! the rest of the server uses: the one way anything reads a tarball (downloads,
//! pulls, promotion, pushes), as a stream, whether its bytes sit in the backend or,
//! for a version committed moments ago, still in the blob journal (`journal`).

pub mod fs;
pub mod journal;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
pub mod s3;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::sync::Notify;

use crate::{BlobJournalStore, StoreError};

pub use fs::FsBlobStore;
pub use s3::{S3BlobStore, S3Credentials, S3Settings};

/// The sha512 of a blob; the only way to address one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobKey([u8; 64]);

impl BlobKey {
    pub fn from_bytes(digest: [u8; 64]) -> Self {
        BlobKey(digest)
    }

    pub fn parse_hex(hex_digest: &str) -> Result<Self, BlobError> {
        let mut out = [0u8; 64];
        hex::decode_to_slice(hex_digest, &mut out).map_err(|_| BlobError::BadKey)?;
        Ok(BlobKey(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// The HTTP entity tag of the blob: the same for every replica, as it is the content's.
    pub fn etag(&self) -> String {
        format!("\"{}\"", &self.to_hex()[..32])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob key is not a sha512 hex digest")]
    BadKey,
    #[error("blob bytes do not match their digest")]
    DigestMismatch,
    #[error("blob storage I/O failed")]
    Io(#[from] std::io::Error),
    #[error("blob journal")]
    Journal(#[from] StoreError),
    /// An object store refused or failed a request. `store` names the bucket and the
    /// endpoint (never a credential); `hint` says what to check, when it is known.
    #[error("{store}: {operation} failed{hint}: {cause}")]
    Backend {
        store: String,
        operation: &'static str,
        hint: &'static str,
        cause: Box<object_store::Error>,
    },
}

/// An open blob: its length, its entity tag and its bytes as they are read.
pub struct BlobStream {
    pub len: u64,
    pub etag: String,
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

impl BlobStream {
    /// A blob whose bytes are in memory already.
    pub fn from_bytes(key: &BlobKey, bytes: Bytes) -> Self {
        BlobStream {
            len: bytes.len() as u64,
            etag: key.etag(),
            body: futures_util::stream::once(async move { Ok(bytes) }).boxed(),
        }
    }

    /// Bytes `range` of the blob (cut at its end), read into memory: for small blobs
    /// and backends without ranged reads.
    pub async fn into_part(self, key: &BlobKey, range: std::ops::Range<u64>) -> Result<BlobStream, BlobError> {
        let bytes = self.into_bytes().await?;
        let end = usize::try_from(range.end).unwrap_or(usize::MAX).min(bytes.len());
        let start = usize::try_from(range.start).unwrap_or(usize::MAX).min(end);
        Ok(BlobStream::from_bytes(key, bytes.slice(start..end)))
    }

    /// Reads the whole blob into memory (promotion, pushes); downloads stream instead.
    pub async fn into_bytes(self) -> Result<Bytes, BlobError> {
        let mut bytes = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        let mut body = self.body;
        while let Some(piece) = body.try_next().await? {
            bytes.extend_from_slice(&piece);
        }
        Ok(Bytes::from(bytes))
    }
}

/// The bytes of a blob a client asked for (HTTP's `Range: bytes=…`), before the
/// blob's length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `first-last`, both included.
    Bounded { first: u64, last: u64 },
    /// `first-`: from `first` to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The bytes `start..end` of a blob of `len` bytes this range names (cut at its
    /// end), or `None` when it names none of them.
    pub fn within(self, len: u64) -> Option<std::ops::Range<u64>> {
        let range = match self {
            ByteRange::Bounded { first, last } if first <= last => first..last.saturating_add(1).min(len),
            ByteRange::Bounded { .. } => return None,
            ByteRange::From(first) => first..len,
            ByteRange::Suffix(n) => len.saturating_sub(n)..len,
        };
        (range.start < range.end).then_some(range)
    }
}

/// What [`Blobs::open_range`] found.
pub enum Ranged {
    /// The asked-for bytes `range` of a blob of `total` bytes; `stream.len` is theirs.
    Part {
        stream: BlobStream,
        range: std::ops::Range<u64>,
        total: u64,
    },
    /// The range names no byte of the blob's `total`.
    Unsatisfiable { total: u64 },
}

/// A blob backend.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` under `key` after checking they hash to it. Durable on return.
    /// An existing blob with that key is success.
    async fn put(&self, key: &BlobKey, bytes: Bytes) -> Result<(), BlobError>;
    /// Whether the blobs are this host's (files, memory): an embedded install, which
    /// `storage::backup` copies. A bucket is backed up by its own means (versioning).
    fn embedded(&self) -> bool {
        true
    }
    /// Whether `put` waits for the disk (fsync). Only then is it worth keeping small
    /// blobs in the blob journal instead, and writing them with `put_unsynced`.
    fn syncs(&self) -> bool {
        false
    }
    /// Like `put` for many blobs, without waiting for the disk: the caller keeps the
    /// bytes durable elsewhere (the blob journal) until `sync` has returned for them.
    async fn put_unsynced(&self, blobs: Vec<(BlobKey, Bytes)>) -> Result<(), BlobError> {
        for (key, bytes) in blobs {
            self.put(&key, bytes).await?;
        }
        Ok(())
    }
    /// Makes blobs written by `put_unsynced` durable.
    async fn sync(&self, _keys: &[BlobKey]) -> Result<(), BlobError> {
        Ok(())
    }
    /// Starts a blob written piece by piece (a tarball streaming in from an upstream),
    /// whose key is known only at the end. Dropped without `commit`, it leaves nothing.
    async fn stage(&self) -> Result<Box<dyn StagedBlob>, BlobError>;
    /// The blob as a stream, `None` when it is not stored.
    async fn open(&self, key: &BlobKey) -> Result<Option<BlobStream>, BlobError>;
    async fn contains(&self, key: &BlobKey) -> Result<bool, BlobError>;
    /// The blob's length, `None` when it is not stored.
    async fn size(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        Ok(self.open(key).await?.map(|blob| blob.len))
    }
    /// Bytes `range` (within the blob) as a stream; `None` when it is not stored.
    async fn open_part(&self, key: &BlobKey, range: std::ops::Range<u64>) -> Result<Option<BlobStream>, BlobError> {
        match self.open(key).await? {
            Some(blob) => Ok(Some(blob.into_part(key, range).await?)),
            None => Ok(None),
        }
    }
    /// A URL anyone may `GET` the blob from for `expires_in`, signed with the
    /// backend's credentials (S3's presigned URLs); `None` when the backend has none.
    async fn signed_url(&self, _key: &BlobKey, _expires_in: std::time::Duration) -> Result<Option<String>, BlobError> {
        Ok(None)
    }
    /// Every stored blob (housekeeping: check, garbage collection, tests).
    async fn list(&self) -> Result<Vec<BlobKey>, BlobError>;
    /// Blobs being written right now (staged, not committed).
    async fn staged(&self) -> Result<usize, BlobError>;
    /// Removes a blob no version refers to, unless it was written or reused within
    /// `grace` (a publish may be about to refer to it). Garbage collection only.
    async fn collect(&self, key: &BlobKey, grace: std::time::Duration) -> Result<Collected, BlobError>;
}

/// What [`BlobStore::collect`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collected {
    Removed,
    /// Written or reused within the grace period: kept.
    Young,
    Missing,
}

/// A blob being written; see [`BlobStore::stage`].
#[async_trait]
pub trait StagedBlob: Send {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError>;
    /// Makes what was written durable under `key`, which must be its sha512.
    async fn commit(self: Box<Self>, key: &BlobKey) -> Result<(), BlobError>;
}

/// The blobs of this server: a backend plus the blob journal. Cheap to clone.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn BlobStore>,
    journal: Arc<dyn BlobJournalStore>,
    /// Wakes the task that writes journaled blobs to the backend (`journal::start`).
    wake: Arc<Notify>,
    /// Small blobs, for downloads (see [`DOWNLOAD_CACHE_BYTES`]).
    downloads: moka::future::Cache<BlobKey, Bytes>,
}

/// Downloads keep this many bytes of small blobs in memory, so the tarballs every CI
/// job asks for are neither fetched from a bucket nor opened and read from a file each
/// time (a download from memory costs no trip to the blocking pool). A blob never
/// changes (its name is its digest): nothing cached goes stale.
pub const DOWNLOAD_CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// Larger blobs stream from the backend every time.
pub const DOWNLOAD_CACHE_MAX_BLOB: u64 = 1024 * 1024;

impl Blobs {
    /// Starts the task that writes journaled blobs to `store`. Runs until the process ends.
    pub fn start(store: Arc<dyn BlobStore>, journal: Arc<dyn BlobJournalStore>) -> Self {
        let blobs = Blobs::idle(store, journal);
        journal::start(blobs.clone());
        blobs
    }

    /// Without the task: journaled blobs stay in the journal until `recover` or a
    /// server writes them (the CLI; tests).
    pub fn idle(store: Arc<dyn BlobStore>, journal: Arc<dyn BlobJournalStore>) -> Self {
        let downloads = moka::future::Cache::builder()
            .max_capacity(DOWNLOAD_CACHE_BYTES)
            .weigher(|_, bytes: &Bytes| u32::try_from(bytes.len()).unwrap_or(u32::MAX))
            .build();
        Blobs {
            store,
            journal,
            wake: Arc::new(Notify::new()),
            downloads,
        }
    }

    /// The backend, for housekeeping.
    pub fn store(&self) -> &dyn BlobStore {
        self.store.as_ref()
    }

    /// A blob, to stream: from the backend or, until its file is written, the journal.
    pub async fn open(&self, key: &BlobKey) -> Result<Option<BlobStream>, BlobError> {
        if let Some(stream) = self.store.open(key).await? {
            return Ok(Some(stream));
        }
        if let Some(bytes) = self.journal.journaled_bytes(&key.to_hex()).await? {
            return Ok(Some(BlobStream::from_bytes(key, Bytes::from(bytes))));
        }
        // The task may have written the file, and deleted the row, in between.
        self.store.open(key).await
    }

    /// A blob for a download: as [`Blobs::open`], but a small blob is kept in memory
    /// for the next download of it. Checks read with `open`, from the backend itself.
    pub async fn serve(&self, key: &BlobKey) -> Result<Option<BlobStream>, BlobError> {
        let cache = &self.downloads;
        if let Some(bytes) = cache.get(key).await {
            return Ok(Some(BlobStream::from_bytes(key, bytes)));
        }
        match self.open(key).await? {
            Some(blob) if blob.len <= DOWNLOAD_CACHE_MAX_BLOB => {
                let bytes = blob.into_bytes().await?;
                cache.insert(key.clone(), bytes.clone()).await;
                Ok(Some(BlobStream::from_bytes(key, bytes)))
            }
            other => Ok(other),
        }
    }

    /// Part of a blob, to stream (HTTP range requests): from the backend or the journal.
    pub async fn open_range(&self, key: &BlobKey, asked: ByteRange) -> Result<Option<Ranged>, BlobError> {
        // The backend knows the length; a blob it does not hold yet is in the journal
        // (small: read whole), or was written meanwhile.
        let (total, whole) = match self.store.size(key).await? {
            Some(total) => (total, None),
            None => match self.open(key).await? {
                Some(blob) => (blob.len, Some(blob)),
                None => return Ok(None),
            },
        };
        let Some(range) = asked.within(total) else {
            return Ok(Some(Ranged::Unsatisfiable { total }));
        };
        let stream = match whole {
            Some(blob) => Some(blob.into_part(key, range.clone()).await?),
            None => self.store.open_part(key, range.clone()).await?,
        };
        Ok(stream.map(|stream| Ranged::Part { stream, range, total }))
    }

    /// A whole blob in memory (promotion, pushes); downloads stream instead.
    pub async fn read(&self, key: &BlobKey) -> Result<Option<Bytes>, BlobError> {
        match self.open(key).await? {
            Some(stream) => Ok(Some(stream.into_bytes().await?)),
            None => Ok(None),
        }
    }

    /// Whether a tarball of `len` bytes is committed in the blob journal with its
    /// version rather than written first: small ones, where the backend syncs.
    pub fn journals(&self, len: usize) -> bool {
        len <= journal::MAX_BYTES && self.store.syncs()
    }

    /// A version whose blob is journaled was committed: its file can be written.
    pub fn committed(&self) {
        self.wake.notify_one();
    }

    pub async fn put(&self, key: &BlobKey, bytes: Bytes) -> Result<(), BlobError> {
        self.store.put(key, bytes).await
    }

    pub async fn stage(&self) -> Result<Box<dyn StagedBlob>, BlobError> {
        self.store.stage().await
    }

    /// Every blob held: in the backend and in the journal.
    pub async fn count(&self) -> Result<usize, BlobError> {
        let mut keys: std::collections::BTreeSet<String> = self.journal.journaled_keys().await?.into_iter().collect();
        keys.extend(self.store.list().await?.iter().map(BlobKey::to_hex));
        Ok(keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::ByteRange;

    #[test]
    fn ranges_are_cut_at_the_end_and_empty_ones_name_nothing() {
        let bounded = |first, last| ByteRange::Bounded { first, last };
        assert_eq!(bounded(0, 499).within(1000), Some(0..500));
        assert_eq!(bounded(500, 5000).within(1000), Some(500..1000));
        assert_eq!(bounded(1000, 1001).within(1000), None);
        assert_eq!(bounded(5, 4).within(1000), None);
        assert_eq!(ByteRange::From(999).within(1000), Some(999..1000));
        assert_eq!(ByteRange::From(1000).within(1000), None);
        assert_eq!(ByteRange::Suffix(10).within(1000), Some(990..1000));
        assert_eq!(ByteRange::Suffix(5000).within(1000), Some(0..1000));
        assert_eq!(ByteRange::Suffix(0).within(1000), None);
        assert_eq!(ByteRange::From(0).within(0), None);
    }
}
