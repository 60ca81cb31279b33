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
