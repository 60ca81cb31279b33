//! Which backends hold the metadata and the blobs, chosen by URL in this one place.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::blobs::{BlobError, BlobStore, Blobs, FsBlobStore, journal};
use crate::sqlite::SqliteStore;
use crate::{Durability, Meta, StoreError};

/// Where the metadata lives: `sqlite://FILE` (the embedded default).
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
}

/// Where the tarballs live: `file://DIR` (the embedded default).
#[derive(Clone, PartialEq, Eq)]
pub enum BlobUrl {
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("{setting} {url:?}: {why}")]
    Invalid {
        setting: &'static str,
        url: String,
        why: &'static str,
    },
}

impl DatabaseUrl {
    /// Parses the `[database] url` setting.
    pub fn parse(raw: &str) -> Result<Self, UrlError> {
        let invalid = |why| UrlError::Invalid {
            setting: "database url",
            url: redact(raw),
            why,
        };
        match raw.split_once("://") {
            Some(("sqlite", path)) if !path.is_empty() => Ok(DatabaseUrl::Sqlite(PathBuf::from(path))),
            Some(("sqlite", _)) => Err(invalid("names no file; use sqlite:///var/lib/gatehouse/gatehouse.db")),
            Some(("postgres" | "postgresql", _)) => Err(invalid("PostgreSQL is not supported by this build yet")),
            _ => Err(invalid("use sqlite://FILE")),
        }
    }
}

impl BlobUrl {
    /// Parses the `[blobs] url` setting.
    pub fn parse(raw: &str) -> Result<Self, UrlError> {
        let invalid = |why| UrlError::Invalid {
            setting: "blobs url",
            url: redact(raw),
            why,
        };
        match raw.split_once("://") {
            Some(("file", dir)) if !dir.is_empty() => Ok(BlobUrl::File(PathBuf::from(dir))),
            Some(("file", _)) => Err(invalid("names no folder; use file:///var/lib/gatehouse/blobs")),
            Some(("s3", _)) => Err(invalid("S3-compatible storage is not supported by this build yet")),
            _ => Err(invalid("use file://DIR")),
        }
    }
}

/// A URL fit for logs: any password (`scheme://user:password@host`) masked.
fn redact(raw: &str) -> String {
    match raw.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((credentials, host)) if credentials.contains(':') => {
                let user = credentials.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            _ => raw.to_owned(),
        },
        None => raw.to_owned(),
    }
}

// Hand-written so a URL with a password never reaches a log through `{:?}`.
impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
        }
    }
}

impl std::fmt::Debug for BlobUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobUrl::File(path) => write!(f, "file://{}", path.display()),
        }
    }
}

/// Both stores, opened.
pub struct Storage {
    pub meta: Meta,
    pub blobs: Blobs,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create {path}: {cause}")]
    CreateDir { path: PathBuf, cause: std::io::Error },
    #[error("metadata store {url:?}: {cause}")]
    Meta { url: DatabaseUrl, cause: StoreError },
    #[error("blob store {url:?}: {cause}")]
    Blobs { url: BlobUrl, cause: BlobError },
}

/// What a process does with the blob journal: a server writes its blobs in the
/// background; a CLI command leaves them to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalTask {
    Run,
    LeaveToServer,
}

/// Opens (creating if needed) the metadata store and the blob store. With
/// `JournalTask::Run`, first writes the blobs a crash left in the journal, so that
/// nothing is served before they are back.
pub async fn open(
    database: &DatabaseUrl,
    blobs: &BlobUrl,
    durability: Durability,
    task: JournalTask,
) -> Result<Storage, OpenError> {
    let meta = open_meta(database, durability).await?;
    let blob_error = |cause| OpenError::Blobs {
        url: blobs.clone(),
        cause,
    };
    let store: Arc<dyn BlobStore> = match blobs {
        BlobUrl::File(dir) => Arc::new(FsBlobStore::open(dir, durability).await.map_err(blob_error)?),
    };
    let blobs = match task {
        JournalTask::Run => {
            let idle = Blobs::idle(store.clone(), meta.clone());
            journal::recover(&idle).await.map_err(blob_error)?;
            Blobs::start(store, meta.clone())
        }
        JournalTask::LeaveToServer => Blobs::idle(store, meta.clone()),
    };
    Ok(Storage { meta, blobs })
}

async fn open_meta(database: &DatabaseUrl, durability: Durability) -> Result<Meta, OpenError> {
    match database {
        DatabaseUrl::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                create_dir(dir).await?;
            }
            let store = SqliteStore::open(path, durability)
                .await
                .map_err(|cause| OpenError::Meta {
                    url: database.clone(),
                    cause,
                })?;
            Ok(Arc::new(store))
        }
    }
}

async fn create_dir(dir: &Path) -> Result<(), OpenError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|cause| OpenError::CreateDir {
            path: dir.to_owned(),
            cause,
        })
}

/// What a backup copied.
#[derive(Debug, Default)]
pub struct BackupReport {
    pub versions: usize,
    pub blobs: usize,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} is not empty: back up into a new folder")]
    NotEmpty(PathBuf),
    #[error(
        "backup and restore are for the embedded stores (SQLite and a blob folder); for PostgreSQL use pg_dump and bucket versioning"
    )]
    NotEmbedded,
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("cannot copy the database: {0}")]
    Database(StoreError),
    #[error("{0}")]
    Blobs(BlobError),
    #[error("the backup refers to blob {0}, which neither the live stores nor the backup hold")]
    MissingBlob(String),
}

/// A consistent copy of a running embedded install in `dest` (created; must be new or
/// empty): the database as of one moment (SQLite's `VACUUM INTO` reads one snapshot
/// while writers go on), then every blob that snapshot refers to, each verified. The
/// copy is itself an embedded install: `gatehouse.db` and `blobs/`.
pub async fn backup(storage: &Storage, database: &DatabaseUrl, dest: &Path) -> Result<BackupReport, BackupError> {
    let DatabaseUrl::Sqlite(source) = database;
    ensure_empty(dest).await?;
    let copy = dest.join("gatehouse.db");
    SqliteStore::backup_into(source, &copy)
        .await
        .map_err(BackupError::Database)?;
    let snapshot = SqliteStore::open(&copy, Durability::Full)
        .await
        .map_err(BackupError::Database)?;
    let references = crate::PackageStore::blob_references(&snapshot)
        .await
        .map_err(BackupError::Database)?;
    let target = FsBlobStore::open(&dest.join("blobs"), Durability::Full)
        .await
        .map_err(BackupError::Blobs)?;
    let mut report = BackupReport {
        versions: references.len(),
        ..BackupReport::default()
    };
    let mut seen = std::collections::BTreeSet::new();
    for reference in references {
        if !seen.insert(reference.blob.sha512_hex.clone()) {
            continue;
        }
        let key = crate::blobs::BlobKey::parse_hex(&reference.blob.sha512_hex).map_err(BackupError::Blobs)?;
        let bytes = storage
            .blobs
            .read(&key)
            .await
            .map_err(BackupError::Blobs)?
            .ok_or_else(|| BackupError::MissingBlob(reference.blob.sha512_hex.clone()))?;
        report.bytes += bytes.len() as u64;
        target.put(&key, bytes).await.map_err(BackupError::Blobs)?;
        report.blobs += 1;
    }
    Ok(report)
}

/// Makes `source` (a backup) the embedded install at `database` and `blobs`, which
/// must not hold one yet. Every blob is verified as it is copied.
pub async fn restore(source: &Path, database: &DatabaseUrl, blobs: &BlobUrl) -> Result<BackupReport, BackupError> {
    let (DatabaseUrl::Sqlite(db_path), BlobUrl::File(blob_dir)) = (database, blobs);
    if tokio::fs::try_exists(db_path).await.unwrap_or(false) {
        return Err(BackupError::NotEmpty(db_path.clone()));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |cause| BackupError::Io { path, cause }
    };
    let backup_db = source.join("gatehouse.db");
    // Opened first: a folder that is no backup fails before anything is written.
    let snapshot = SqliteStore::open(&backup_db, Durability::Full)
        .await
        .map_err(BackupError::Database)?;
    let references = crate::PackageStore::blob_references(&snapshot)
        .await
        .map_err(BackupError::Database)?;
    drop(snapshot);
    let backup_blobs = FsBlobStore::open(&source.join("blobs"), Durability::Full)
        .await
        .map_err(BackupError::Blobs)?;
    let target = FsBlobStore::open(blob_dir, Durability::Full)
        .await
        .map_err(BackupError::Blobs)?;
    let mut report = BackupReport {
        versions: references.len(),
        ..BackupReport::default()
    };
    for key in backup_blobs.list().await.map_err(BackupError::Blobs)? {
        let Some(stream) = backup_blobs.open(&key).await.map_err(BackupError::Blobs)? else {
            continue;
        };
        let bytes = stream.into_bytes().await.map_err(BackupError::Blobs)?;
        report.bytes += bytes.len() as u64;
        target.put(&key, bytes).await.map_err(BackupError::Blobs)?;
        report.blobs += 1;
    }
    if let Some(dir) = db_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
    }
    // The database last, so an interrupted restore leaves no install that lacks blobs.
    let partial = db_path.with_extension("db.restoring");
    tokio::fs::copy(&backup_db, &partial).await.map_err(io(&partial))?;
    tokio::fs::File::open(&partial)
        .await
        .map_err(io(&partial))?
        .sync_all()
        .await
        .map_err(io(&partial))?;
    tokio::fs::rename(&partial, db_path).await.map_err(io(db_path))?;
    Ok(report)
}

async fn ensure_empty(dest: &Path) -> Result<(), BackupError> {
    match tokio::fs::read_dir(dest).await {
        Ok(mut entries) => {
            let first = entries.next_entry().await.map_err(|cause| BackupError::Io {
                path: dest.to_owned(),
                cause,
            })?;
            if first.is_some() {
                return Err(BackupError::NotEmpty(dest.to_owned()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(cause) => {
            return Err(BackupError::Io {
                path: dest.to_owned(),
                cause,
            });
        }
    }
    tokio::fs::create_dir_all(dest).await.map_err(|cause| BackupError::Io {
        path: dest.to_owned(),
        cause,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_backend() {
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/g/g.db").expect("valid"),
            DatabaseUrl::Sqlite(PathBuf::from("/var/lib/g/g.db"))
        );
        assert_eq!(
            BlobUrl::parse("file://blobs").expect("valid"),
            BlobUrl::File(PathBuf::from("blobs"))
        );
        for bad in ["sqlite://", "mysql://x", "/var/lib/g.db"] {
            assert!(DatabaseUrl::parse(bad).is_err(), "{bad}");
        }
        for bad in ["file://", "ftp://x", "blobs"] {
            assert!(BlobUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_never_reach_messages() {
        let err = DatabaseUrl::parse("postgres://gatehouse:s3cret@db:5432/g").expect_err("not yet");
        let message = err.to_string();
        assert!(!message.contains("s3cret"), "{message}");
        assert!(message.contains("gatehouse:***@db:5432/g"), "{message}");
    }
}
