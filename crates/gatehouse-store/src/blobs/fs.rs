//! Blobs as files: `sha512/ab/cd/<128 hex>` under one directory.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha512};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use super::{BlobError, BlobKey, BlobStore, BlobStream, Collected, StagedBlob};
use crate::Durability;

/// A staged file untouched this long was abandoned by a crash (transfers time out
/// long before).
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Downloads read blob files in pieces this large (larger pieces measured faster for
/// big tarballs but held far more memory under many clients)…
const READ_BYTES: usize = 64 * 1024;
/// …and a file no larger than this whole, in the same trip to the blocking pool that
/// opens it: most tarballs are small, and each trip costs more than reading them.
const READ_WHOLE_BYTES: u64 = 256 * 1024;

/// `sha512/ab/cd/<128 hex>`: fans out so no directory grows huge.
fn relative_path(key: &BlobKey) -> PathBuf {
    let hex = key.to_hex();
    PathBuf::from("sha512").join(&hex[0..2]).join(&hex[2..4]).join(hex)
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
        // Leftovers of writes cut short by a crash are never referenced and safe to
        // drop, but another process on the same folder (a server, while this is a CLI
        // command) may be writing the young ones: only old files go.
        let mut entries = tokio::fs::read_dir(&tmp).await?;
        while let Some(entry) = entries.next_entry().await? {
            let age = entry
                .metadata()
                .await
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok());
            if age.is_some_and(|age| age > ABANDONED_AFTER) {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
        Ok(FsBlobStore {
            root: root.to_owned(),
            sync: durability == Durability::Full,
        })
    }

    fn path_of(&self, key: &BlobKey) -> PathBuf {
        self.root.join(relative_path(key))
    }

    fn tmp_path(&self) -> PathBuf {
        self.root.join("tmp").join(format!("{:016x}", rand::random::<u64>()))
    }
}

/// Whether the blob file at `path` exists and holds the bytes of `key`. Only then is an
/// existing file kept: a crash can leave a file whose write never reached the disk.
///
/// A kept file is touched, and must still be in place afterwards: garbage collection
/// (`collect`) moves a blob aside before it looks at its age, so a write that reuses a
/// blob either makes it young again in time, or finds it gone and writes it anew.
fn holds(path: &Path, key: &BlobKey) -> std::io::Result<bool> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut digest = Sha512::new();
    std::io::copy(&mut file, &mut digest)?;
    if digest.finalize().as_slice() != key.as_bytes() {
        return Ok(false);
    }
    file.set_modified(std::time::SystemTime::now())?;
    std::fs::exists(path)
}

/// Removes the blob file at `path` unless it changed within `grace`; blocking. It is
/// first moved aside to `tombstone`, then its age decides (see `holds`).
fn collect_file(path: &Path, tombstone: &Path, grace: std::time::Duration) -> Result<Collected, BlobError> {
    match std::fs::rename(path, tombstone) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Collected::Missing),
        Err(e) => return Err(e.into()),
    }
    let age = std::fs::metadata(tombstone)?.modified()?.elapsed().unwrap_or_default();
    if age < grace {
        // Reused (or written) meanwhile: put it back, unless a new copy is there.
        if std::fs::exists(path)? {
            std::fs::remove_file(tombstone)?;
        } else {
            std::fs::rename(tombstone, path)?;
        }
        return Ok(Collected::Young);
    }
    std::fs::remove_file(tombstone)?;
    Ok(Collected::Removed)
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
    if Sha512::digest(bytes).as_slice() != key.as_bytes() {
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

enum Opened {
    Whole(Bytes),
    Large { file: std::fs::File, len: u64 },
}

/// Opens a blob file and, when it is small, reads it (`None`: there is none).
fn open_file(path: &Path) -> Result<Option<Opened>, BlobError> {
    use std::io::Read as _;
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    if len > READ_WHOLE_BYTES {
        return Ok(Some(Opened::Large { file, len }));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.read_to_end(&mut bytes)?;
    Ok(Some(Opened::Whole(Bytes::from(bytes))))
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

    async fn size(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        match tokio::fs::metadata(self.path_of(key)).await {
            Ok(metadata) => Ok(Some(metadata.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn open_part(&self, key: &BlobKey, range: std::ops::Range<u64>) -> Result<Option<BlobStream>, BlobError> {
        use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
        let mut file = match tokio::fs::File::open(self.path_of(key)).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        file.seek(std::io::SeekFrom::Start(range.start)).await?;
        let len = range.end - range.start;
        Ok(Some(BlobStream {
            len,
            etag: key.etag(),
            body: ReaderStream::with_capacity(file.take(len), READ_BYTES).boxed(),
        }))
    }

    async fn open(&self, key: &BlobKey) -> Result<Option<BlobStream>, BlobError> {
        let path = self.path_of(key);
        let opened = tokio::task::spawn_blocking(move || open_file(&path))
            .await
            .map_err(blocking_failed)?;
        Ok(match opened? {
            None => None,
            Some(Opened::Whole(bytes)) => Some(BlobStream::from_bytes(key, bytes)),
            Some(Opened::Large { file, len }) => Some(BlobStream {
                len,
                etag: key.etag(),
                body: ReaderStream::with_capacity(tokio::fs::File::from_std(file), READ_BYTES).boxed(),
            }),
        })
    }

    async fn contains(&self, key: &BlobKey) -> Result<bool, BlobError> {
        Ok(tokio::fs::try_exists(self.path_of(key)).await?)
    }

    async fn list(&self) -> Result<Vec<BlobKey>, BlobError> {
        let root = self.root.join("sha512");
        tokio::task::spawn_blocking(move || list_files(&root))
            .await
            .map_err(blocking_failed)?
    }

    async fn collect(&self, key: &BlobKey, grace: std::time::Duration) -> Result<Collected, BlobError> {
        let (path, tombstone) = (self.path_of(key), self.tmp_path());
        tokio::task::spawn_blocking(move || collect_file(&path, &tombstone, grace))
            .await
            .map_err(blocking_failed)?
    }

    async fn staged(&self) -> Result<usize, BlobError> {
        let mut entries = tokio::fs::read_dir(self.root.join("tmp")).await?;
        let mut count = 0;
        while entries.next_entry().await?.is_some() {
            count += 1;
        }
        Ok(count)
    }
}

/// The keys of the blob files under `root` (`ab/cd/<hex>`); other files are ignored.
fn list_files(root: &Path) -> Result<Vec<BlobKey>, BlobError> {
    let mut keys = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            } else if let Ok(key) = BlobKey::parse_hex(&entry.file_name().to_string_lossy()) {
                keys.push(key);
            }
        }
    }
    Ok(keys)
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
        if self.digest.finalize_reset().as_slice() != key.as_bytes() {
            return Err(BlobError::DigestMismatch);
        }
        let (Some(tmp_path), Some(file)) = (self.tmp_path.take(), self.file.take()) else {
            return Err(std::io::Error::other("blob already committed").into());
        };
        let final_path = self.root.join(relative_path(key));
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

    async fn read(store: &FsBlobStore, key: &BlobKey) -> Option<Bytes> {
        match store.open(key).await.expect("open") {
            Some(stream) => Some(stream.into_bytes().await.expect("read")),
            None => None,
        }
    }

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
        assert_eq!(read(&store, &key).await.as_deref(), Some(&b"hello world"[..]));

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
        assert_eq!(read(&store, &key).await.as_deref(), Some(&b"the real bytes"[..]));
    }

    #[tokio::test]
    async fn lists_what_it_holds_and_what_it_is_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path(), Durability::Full).await.expect("open");
        let (a, b) = (key_of(b"a"), key_of(b"b"));
        store.put(&a, Bytes::from_static(b"a")).await.expect("put");
        store.put(&b, Bytes::from_static(b"b")).await.expect("put");
        let mut listed = store.list().await.expect("list");
        listed.sort_by_key(BlobKey::to_hex);
        let mut expected = vec![a, b];
        expected.sort_by_key(BlobKey::to_hex);
        assert_eq!(listed, expected);
        let staged = store.stage().await.expect("stage");
        assert_eq!(store.staged().await.expect("staged"), 1);
        drop(staged);
    }

    #[test]
    fn keys_are_hex_digests_only() {
        assert!(BlobKey::parse_hex("../../etc/passwd").is_err());
        let key = key_of(b"x");
        assert_eq!(BlobKey::parse_hex(&key.to_hex()).expect("valid"), key);
    }
}
