//! Content-addressed tarball storage. A blob's only name is the sha512 of its bytes:
//! no path or key is ever built from a package name, version or file name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest as _, Sha512};
use tokio::io::AsyncWriteExt;

use crate::config::Durability;

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

    /// `sha512/ab/cd/<128 hex>`: fans out so no directory grows huge.
    fn relative_path(&self) -> PathBuf {
        let hex = self.to_hex();
        PathBuf::from("sha512").join(&hex[0..2]).join(&hex[2..4]).join(hex)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob key is not a sha512 hex digest")]
    BadKey,
    #[error("blob bytes do not match their digest")]
    DigestMismatch,
    #[error("blob storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// An open blob, ready to stream.
pub struct BlobReader {
    pub len: u64,
    pub file: tokio::fs::File,
}

impl BlobReader {
    /// Reads the whole blob into memory.
    pub async fn into_bytes(mut self) -> Result<Bytes, BlobError> {
        let mut bytes = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        tokio::io::AsyncReadExt::read_to_end(&mut self.file, &mut bytes).await?;
        Ok(Bytes::from(bytes))
    }
}

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` under `key` after checking they hash to it. Durable on return.
    async fn put(&self, key: &BlobKey, bytes: Bytes) -> Result<(), BlobError>;
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
    async fn open(&self, key: &BlobKey) -> Result<Option<BlobReader>, BlobError>;
    async fn contains(&self, key: &BlobKey) -> Result<bool, BlobError>;

    /// The whole blob in memory (promotion, re-admission); downloads stream instead.
    async fn read(&self, key: &BlobKey) -> Result<Option<Bytes>, BlobError> {
        match self.open(key).await? {
            Some(blob) => Ok(Some(blob.into_bytes().await?)),
            None => Ok(None),
        }
    }
}

pub type Blobs = Arc<dyn BlobStore>;

/// A blob being written; see [`BlobStore::stage`].
#[async_trait]
pub trait StagedBlob: Send {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError>;
    /// Makes what was written durable under `key`, which must be its sha512.
    async fn commit(self: Box<Self>, key: &BlobKey) -> Result<(), BlobError>;
}

/// Blobs as files under one directory: write to `tmp/`, fsync, rename into place,
/// fsync the directory (the fsyncs only with `Durability::Full`). A crash leaves at
/// worst an orphan in `tmp/`.
pub struct FsBlobStore {
    root: PathBuf,
    /// fsync blobs and their directories (`Durability::Full`).
    sync: bool,
}

impl FsBlobStore {
    pub async fn open(root: &Path, durability: Durability) -> Result<Self, BlobError> {
        let tmp = root.join("tmp");
        tokio::fs::create_dir_all(&tmp).await?;
        // Leftovers of writes cut short by a crash: never referenced, safe to drop.
        let mut entries = tokio::fs::read_dir(&tmp).await?;
        while let Some(entry) = entries.next_entry().await? {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
        Ok(FsBlobStore {
            root: root.to_owned(),
            sync: durability == Durability::Full,
        })
    }

    fn path_of(&self, key: &BlobKey) -> PathBuf {
        self.root.join(key.relative_path())
    }

    fn tmp_path(&self) -> PathBuf {
        self.root.join("tmp").join(format!("{:016x}", rand::random::<u64>()))
    }
}

/// Whether the blob file at `path` exists and holds the bytes of `key`. Only then is an
/// existing file kept: a crash can leave a file whose write never reached the disk.
fn holds(path: &Path, key: &BlobKey) -> std::io::Result<bool> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut digest = Sha512::new();
    std::io::copy(&mut file, &mut digest)?;
    Ok(digest.finalize().as_slice() == key.0)
}

/// fsyncs a blob file and its directory, so both its bytes and its name survive a
/// power loss.
fn sync_blob_file(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    std::fs::File::open(parent_of(path)?)?.sync_all()
}

fn parent_of(path: &Path) -> std::io::Result<&Path> {
    path.parent()
        .ok_or_else(|| std::io::Error::other("blob path has no parent"))
}

/// Makes a fully written temporary file the blob `final_path`: fsync the file (if
/// `sync`), rename it into place, fsync the directory (if `sync`). Blocking (one trip
/// to the blocking pool for all of it). If the blob is already there, the temporary
/// file is removed (and the blob synced, if `sync`: it may have been written without);
/// likewise on failure.
fn install(
    file: std::fs::File,
    tmp_path: &Path,
    final_path: &Path,
    key: &BlobKey,
    sync: bool,
) -> Result<(), BlobError> {
    let result = (|| -> std::io::Result<()> {
        if holds(final_path, key)? {
            drop(file);
            std::fs::remove_file(tmp_path)?;
            return if sync { sync_blob_file(final_path) } else { Ok(()) };
        }
        if sync {
            file.sync_all()?;
        }
        drop(file);
        let dir = parent_of(final_path)?;
        std::fs::create_dir_all(dir)?;
        std::fs::rename(tmp_path, final_path)?;
        if sync {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp_path);
    }
    Ok(result?)
}

/// Writes `bytes` (checked against `key`) to the blob `final_path` through a temporary
/// file, unless the blob is there already; blocking. `sync` as for `install`.
fn write_blob(key: &BlobKey, bytes: &[u8], tmp_path: &Path, final_path: &Path, sync: bool) -> Result<(), BlobError> {
    if Sha512::digest(bytes).as_slice() != key.0 {
        return Err(BlobError::DigestMismatch);
    }
    if holds(final_path, key)? {
        if sync {
            sync_blob_file(final_path)?;
        }
        return Ok(());
    }
    let mut file = std::fs::File::create(tmp_path)?;
    if let Err(e) = std::io::Write::write_all(&mut file, bytes) {
        let _ = std::fs::remove_file(tmp_path);
        return Err(e.into());
    }
    install(file, tmp_path, final_path, key, sync)
}

/// Makes the blob files at `paths` (under `root`) durable, names included. On Linux,
/// one `syncfs` of the blob store's filesystem: it writes back what is dirty and
/// flushes the disk's cache once, where an fsync per file and directory flushes it
/// for each (hundreds per batch, competing with the commits of publishes).
#[cfg(target_os = "linux")]
fn sync_files(root: &Path, _paths: &[PathBuf]) -> std::io::Result<()> {
    rustix::fs::syncfs(std::fs::File::open(root)?)?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn sync_files(_root: &Path, paths: &[PathBuf]) -> std::io::Result<()> {
    for path in paths {
        std::fs::File::open(path)?.sync_all()?;
    }
    // Many blobs share a directory; each is synced once.
    let dirs: std::collections::BTreeSet<&Path> = paths.iter().filter_map(|p| p.parent()).collect();
    for dir in dirs {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn blocking_failed(e: tokio::task::JoinError) -> BlobError {
    BlobError::Io(std::io::Error::other(e.to_string()))
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, key: &BlobKey, bytes: Bytes) -> Result<(), BlobError> {
        let (key, final_path, tmp_path, sync) = (key.clone(), self.path_of(key), self.tmp_path(), self.sync);
        tokio::task::spawn_blocking(move || write_blob(&key, &bytes, &tmp_path, &final_path, sync))
            .await
            .map_err(blocking_failed)?
    }

    fn syncs(&self) -> bool {
        self.sync
    }

    async fn put_unsynced(&self, blobs: Vec<(BlobKey, Bytes)>) -> Result<(), BlobError> {
        let files: Vec<_> = blobs
            .into_iter()
            .map(|(key, bytes)| (self.path_of(&key), self.tmp_path(), key, bytes))
            .collect();
        // One trip to the blocking pool for all of them.
        tokio::task::spawn_blocking(move || {
            files
                .iter()
                .try_for_each(|(path, tmp_path, key, bytes)| write_blob(key, bytes, tmp_path, path, false))
        })
        .await
        .map_err(blocking_failed)?
    }

    async fn sync(&self, keys: &[BlobKey]) -> Result<(), BlobError> {
        if !self.sync {
            return Ok(());
        }
        let paths: Vec<PathBuf> = keys.iter().map(|key| self.path_of(key)).collect();
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || sync_files(&root, &paths))
            .await
            .map_err(blocking_failed)??;
        Ok(())
    }

    async fn stage(&self) -> Result<Box<dyn StagedBlob>, BlobError> {
        let tmp_path = self.tmp_path();
        let file = tokio::fs::File::create(&tmp_path).await?;
        Ok(Box::new(FsStagedBlob {
            root: self.root.clone(),
            sync: self.sync,
            tmp_path: Some(tmp_path),
            file: Some(file),
            digest: Sha512::new(),
        }))
    }

    async fn open(&self, key: &BlobKey) -> Result<Option<BlobReader>, BlobError> {
        match tokio::fs::File::open(self.path_of(key)).await {
            Ok(file) => {
                let len = file.metadata().await?.len();
                Ok(Some(BlobReader { len, file }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn contains(&self, key: &BlobKey) -> Result<bool, BlobError> {
        Ok(tokio::fs::try_exists(self.path_of(key)).await?)
    }
}

struct FsStagedBlob {
    root: PathBuf,
    sync: bool,
    /// `None` once committed: nothing left to clean up.
    tmp_path: Option<PathBuf>,
    file: Option<tokio::fs::File>,
    digest: Sha512,
}

#[async_trait]
impl StagedBlob for FsStagedBlob {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.digest.update(chunk);
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("blob already committed"))?;
        Ok(file.write_all(chunk).await?)
    }

    async fn commit(mut self: Box<Self>, key: &BlobKey) -> Result<(), BlobError> {
        if self.digest.finalize_reset().as_slice() != key.0 {
            return Err(BlobError::DigestMismatch);
        }
        let (Some(tmp_path), Some(file)) = (self.tmp_path.take(), self.file.take()) else {
            return Err(std::io::Error::other("blob already committed").into());
        };
        let final_path = self.root.join(key.relative_path());
        let (key, sync) = (key.clone(), self.sync);
        let mut file = file;
        file.flush().await?;
        let file = file.into_std().await;
        tokio::task::spawn_blocking(move || install(file, &tmp_path, &final_path, &key, sync))
            .await
            .map_err(blocking_failed)?
    }
}

impl Drop for FsStagedBlob {
    fn drop(&mut self) {
        // Abandoned (refused, failed, cut short): remove the partial file off the runtime.
        if let Some(path) = self.tmp_path.take() {
            drop(self.file.take());
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || std::fs::remove_file(path))),
                Err(_) => drop(std::fs::remove_file(path)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(bytes: &[u8]) -> BlobKey {
        BlobKey::from_bytes(Sha512::digest(bytes).into())
    }

    #[tokio::test]
    async fn stores_by_digest_and_refuses_mismatched_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path(), Durability::Full).await.expect("open");
        let key = key_of(b"hello");
        store.put(&key, Bytes::from_static(b"hello")).await.expect("put");
        let blob = store.open(&key).await.expect("open").expect("present");
        assert_eq!(blob.len, 5);

        let other = key_of(b"other");
        let err = store
            .put(&other, Bytes::from_static(b"not other"))
            .await
            .expect_err("mismatch");
        assert!(matches!(err, BlobError::DigestMismatch));
        assert!(!store.contains(&other).await.expect("contains"));
        let leftovers = std::fs::read_dir(dir.path().join("tmp")).expect("tmp").count();
        assert_eq!(leftovers, 0);
    }

    #[tokio::test]
    async fn staged_blobs_are_stored_on_commit_and_vanish_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path(), Durability::Full).await.expect("open");
        let key = key_of(b"hello world");
        let mut staged = store.stage().await.expect("stage");
        staged.write(b"hello ").await.expect("write");
        staged.write(b"world").await.expect("write");
        staged.commit(&key).await.expect("commit");
        assert_eq!(
            store.read(&key).await.expect("read").as_deref(),
            Some(&b"hello world"[..])
        );

        let mut wrong = store.stage().await.expect("stage");
        wrong.write(b"not it").await.expect("write");
        let other = key_of(b"something else");
        assert!(matches!(wrong.commit(&other).await, Err(BlobError::DigestMismatch)));
        assert!(!store.contains(&other).await.expect("contains"));

        let mut abandoned = store.stage().await.expect("stage");
        abandoned.write(b"half a tarb").await.expect("write");
        drop(abandoned);
        let tmp = dir.path().join("tmp");
        for _ in 0..100 {
            if std::fs::read_dir(&tmp).expect("tmp").count() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            std::fs::read_dir(&tmp).expect("tmp").count(),
            0,
            "partial files are removed"
        );
    }

    #[tokio::test]
    async fn a_file_that_does_not_hold_its_blob_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path(), Durability::Full).await.expect("open");
        let key = key_of(b"the real bytes");
        // What a crash can leave of a write that never reached the disk.
        let path = store.path_of(&key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(&path, b"the real").expect("partial file");
        store
            .put(&key, Bytes::from_static(b"the real bytes"))
            .await
            .expect("put");
        assert_eq!(
            store.read(&key).await.expect("read").as_deref(),
            Some(&b"the real bytes"[..])
        );
    }

    #[test]
    fn keys_are_hex_digests_only() {
        assert!(BlobKey::parse_hex("../../etc/passwd").is_err());
        let key = key_of(b"x");
        assert_eq!(BlobKey::parse_hex(&key.to_hex()).expect("valid"), key);
    }
}
