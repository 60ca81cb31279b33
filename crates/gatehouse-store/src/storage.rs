//! Which backends hold the metadata and the blobs, chosen by URL in this one place.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::blobs::{BlobError, BlobStore, Blobs, FsBlobStore, S3BlobStore, S3Settings, journal};
use crate::postgres::{DEFAULT_MAX_CONNECTIONS, PostgresStore};
use crate::sqlite::SqliteStore;
use crate::{Durability, Meta, StoreError};

/// Where the metadata lives: `sqlite://FILE` (the embedded default), or
/// `postgres://…` / `postgresql://…` (several replicas over one database).
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    /// The URL as given (sqlx reads it; it may hold a password, never shown).
    Postgres(String),
}

/// The database settings `open` takes. A `&DatabaseUrl` converts into them with the
/// defaults, so `open(&url, …)` still works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    pub url: DatabaseUrl,
    /// The connection pool's size (PostgreSQL; SQLite has its own fixed pools).
    pub max_connections: u32,
}

impl DatabaseSettings {
    pub fn new(url: DatabaseUrl) -> Self {
        DatabaseSettings {
            url,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl From<DatabaseUrl> for DatabaseSettings {
    fn from(url: DatabaseUrl) -> Self {
        DatabaseSettings::new(url)
    }
}

impl From<&DatabaseUrl> for DatabaseSettings {
    fn from(url: &DatabaseUrl) -> Self {
        DatabaseSettings::new(url.clone())
    }
}

/// Where the tarballs live: `file://DIR` (the embedded default), or
/// `s3://BUCKET[/PREFIX]` (an S3-compatible bucket, shared by several replicas).
#[derive(Clone, PartialEq, Eq)]
pub enum BlobUrl {
    File(PathBuf),
    S3(S3Location),
}

/// The bucket and key prefix of an `s3://` blob URL. How to reach and sign for it
/// (endpoint, region, credentials) is not part of the URL: see [`BlobSettings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// `a/b` (no leading or trailing `/`), or empty for the bucket's root.
    pub prefix: String,
}

impl S3Location {
    /// These settings without the environment: AWS itself, the default region and the
    /// AWS credential chain.
    pub fn settings(&self) -> S3Settings {
        S3Settings::new(self.bucket.clone(), self.prefix.clone())
    }
}

/// The blob settings `open` takes. A `&BlobUrl` converts into them with
/// [`BlobSettings::from_url`], so `open(…, &url, …)` still works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobSettings {
    File(PathBuf),
    S3(S3Settings),
}

impl BlobSettings {
    /// The URL's settings, for S3 with the process's environment applied
    /// ([`S3Settings::with_env`]: `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), the usual way to configure S3
    /// clients and one that keeps secrets out of configuration files.
    pub fn from_url(url: &BlobUrl) -> Self {
        match url {
            BlobUrl::File(dir) => BlobSettings::File(dir.clone()),
            BlobUrl::S3(location) => BlobSettings::S3(location.settings().with_env()),
        }
    }

    /// The URL these settings are for (messages).
    pub fn url(&self) -> BlobUrl {
        match self {
            BlobSettings::File(dir) => BlobUrl::File(dir.clone()),
            BlobSettings::S3(s3) => BlobUrl::S3(S3Location {
                bucket: s3.bucket.clone(),
                prefix: s3.prefix.clone(),
            }),
        }
    }
}

impl From<&BlobUrl> for BlobSettings {
    fn from(url: &BlobUrl) -> Self {
        BlobSettings::from_url(url)
    }
}

impl From<BlobUrl> for BlobSettings {
    fn from(url: BlobUrl) -> Self {
        BlobSettings::from_url(&url)
    }
}

impl From<S3Settings> for BlobSettings {
    fn from(settings: S3Settings) -> Self {
        BlobSettings::S3(settings)
    }
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
            Some(("postgres" | "postgresql", _)) => match sqlx::postgres::PgConnectOptions::from_str(raw) {
                Ok(_) => Ok(DatabaseUrl::Postgres(raw.to_owned())),
                // sqlx's reason is not shown: it may quote the URL.
                Err(_) => Err(invalid(
                    "is no PostgreSQL URL; use postgres://USER:PASSWORD@HOST:5432/DATABASE",
                )),
            },
            _ => Err(invalid("use sqlite://FILE or postgres://USER:PASSWORD@HOST/DATABASE")),
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
            Some(("s3", rest)) => parse_s3(rest).map(BlobUrl::S3).map_err(invalid),
            _ => Err(invalid("use file://DIR or s3://BUCKET/PREFIX")),
        }
    }
}

/// `BUCKET[/PREFIX]` of an `s3://` URL.
fn parse_s3(rest: &str) -> Result<S3Location, &'static str> {
    if rest.contains(['?', '#']) {
        return Err("takes no parameters; the endpoint, region and credentials come from \
                    AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("names no bucket; use s3://BUCKET or s3://BUCKET/PREFIX");
    }
    // S3's rules, loosely (some servers allow `_`); also keeps credentials (`user:pw@`)
    // out of URLs.
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(
            "is no bucket name (lowercase letters, digits, '.', '-'); credentials go in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        );
    }
    let prefix = prefix.trim_end_matches('/');
    if object_store::path::Path::parse(prefix).is_err() {
        return Err("has a prefix with an empty, '.' or '..' part; use s3://BUCKET/a/b");
    }
    Ok(S3Location {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
    })
}

/// A URL fit for logs: any password (`scheme://user:password@host`, or a
/// `password=` parameter) masked.
fn redact(raw: &str) -> String {
    let (url, query) = raw
        .split_once('?')
        .map_or((raw, None), |(url, query)| (url, Some(query)));
    let mut redacted = redact_credentials(url);
    if let Some(query) = query {
        let parameters: Vec<&str> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => "password=***",
                _ => pair,
            })
            .collect();
        redacted.push('?');
        redacted.push_str(&parameters.join("&"));
    }
    redacted
}

fn redact_credentials(raw: &str) -> String {
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
            DatabaseUrl::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

impl std::fmt::Debug for BlobUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobUrl::File(path) => write!(f, "file://{}", path.display()),
            BlobUrl::S3(S3Location { bucket, prefix }) if prefix.is_empty() => write!(f, "s3://{bucket}"),
            BlobUrl::S3(S3Location { bucket, prefix }) => write!(f, "s3://{bucket}/{prefix}"),
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
    // The settings named, so the person starting the server knows what to fix.
    #[error("metadata store {url:?} ([database] url, GATEHOUSE_DATABASE_URL): {cause}")]
    Meta { url: DatabaseUrl, cause: StoreError },
    #[error("blob store {url:?} ([blobs] url, GATEHOUSE_BLOB_URL): {cause}")]
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
/// nothing is served before they are back. `database`: a `&DatabaseUrl` (default
/// settings) or `DatabaseSettings`. `blobs`: a `&BlobUrl` (for S3, the `AWS_*`
/// environment applied: [`BlobSettings::from_url`]) or `BlobSettings`.
pub async fn open(
    database: impl Into<DatabaseSettings>,
    blobs: impl Into<BlobSettings>,
    durability: Durability,
    task: JournalTask,
) -> Result<Storage, OpenError> {
    let meta = open_meta(&database.into(), durability).await?;
    let blobs = blobs.into();
    let blob_error = |cause| OpenError::Blobs {
        url: blobs.url(),
        cause,
    };
    let store: Arc<dyn BlobStore> = match &blobs {
        BlobSettings::File(dir) => Arc::new(FsBlobStore::open(dir, durability).await.map_err(blob_error)?),
        // Durable once acknowledged: `durability` has nothing to choose there.
        BlobSettings::S3(settings) => Arc::new(S3BlobStore::open(settings).await.map_err(blob_error)?),
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

async fn open_meta(settings: &DatabaseSettings, durability: Durability) -> Result<Meta, OpenError> {
    let database = &settings.url;
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
        // `durability` is the server's `synchronous_commit` there (see `postgres`).
        DatabaseUrl::Postgres(url) => {
            let store = PostgresStore::connect(url, settings.max_connections)
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
        "backup and restore are for the embedded stores (SQLite and a blob folder); for PostgreSQL use pg_dump, for S3 bucket versioning or replication"
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
    let DatabaseUrl::Sqlite(source) = database else {
        return Err(BackupError::NotEmbedded);
    };
    if !storage.blobs.store().embedded() {
        return Err(BackupError::NotEmbedded);
    }
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
    let (DatabaseUrl::Sqlite(db_path), BlobUrl::File(blob_dir)) = (database, blobs) else {
        return Err(BackupError::NotEmbedded);
    };
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
        for url in [
            "postgres://g@db/g",
            "postgresql://g:pw@db:5432/g?sslmode=require",
            "postgres://",
        ] {
            assert_eq!(
                DatabaseUrl::parse(url).expect("valid"),
                DatabaseUrl::Postgres(url.to_owned())
            );
        }
        for bad in ["sqlite://", "mysql://x", "/var/lib/g.db", "postgres://db:port/g"] {
            assert!(DatabaseUrl::parse(bad).is_err(), "{bad}");
        }
        for bad in ["file://", "ftp://x", "blobs"] {
            assert!(BlobUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn s3_urls_name_a_bucket_and_a_prefix() {
        let s3 = |bucket: &str, prefix: &str| {
            BlobUrl::S3(S3Location {
                bucket: bucket.into(),
                prefix: prefix.into(),
            })
        };
        for (url, expected) in [
            ("s3://gatehouse", s3("gatehouse", "")),
            ("s3://gatehouse/", s3("gatehouse", "")),
            ("s3://my-bucket.v2/blobs/prod/", s3("my-bucket.v2", "blobs/prod")),
        ] {
            assert_eq!(BlobUrl::parse(url).expect(url), expected);
        }
        assert_eq!(format!("{:?}", s3("b", "p/q")), "s3://b/p/q");
        assert_eq!(format!("{:?}", s3("b", "")), "s3://b");
        for bad in [
            "s3://",
            "s3:///prefix",
            "s3://Bucket",
            "s3://key:s3cret@bucket/p",
            "s3://b/a//c",
            "s3://b/../c",
            "s3://b/p?region=eu-west-1",
        ] {
            let message = BlobUrl::parse(bad).expect_err(bad).to_string();
            assert!(!message.contains("s3cret"), "{message}");
        }
        let settings = BlobSettings::from_url(&BlobUrl::File(PathBuf::from("blobs")));
        assert_eq!(settings, BlobSettings::File(PathBuf::from("blobs")));
        let url = s3("b", "p");
        let BlobSettings::S3(settings) = BlobSettings::from(&url) else {
            panic!("S3 settings for an s3:// URL");
        };
        assert_eq!((settings.bucket.as_str(), settings.prefix.as_str()), ("b", "p"));
        assert_eq!(BlobSettings::S3(settings).url(), url);
    }

    #[tokio::test]
    async fn s3_settings_open_the_s3_store_and_backups_refuse_it() {
        let Some(server) = crate::test_support::s3::start().await else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let database = DatabaseUrl::Sqlite(dir.path().join("g.db"));
        let storage = open(
            &database,
            server.settings("blobs"),
            Durability::Full,
            JournalTask::LeaveToServer,
        )
        .await
        .expect("open");
        let bytes = bytes::Bytes::from_static(b"tarball");
        let key = crate::blobs::BlobKey::from_bytes(<sha2::Sha512 as sha2::Digest>::digest(&bytes).into());
        storage.blobs.put(&key, bytes.clone()).await.expect("put");
        assert_eq!(storage.blobs.read(&key).await.expect("read"), Some(bytes));
        assert!(!storage.blobs.journals(10), "S3 writes need no journal");
        assert!(matches!(
            backup(&storage, &database, &dir.path().join("backup")).await,
            Err(BackupError::NotEmbedded)
        ));
        let blobs = BlobUrl::S3(S3Location {
            bucket: "b".into(),
            prefix: String::new(),
        });
        assert!(matches!(
            restore(dir.path(), &database, &blobs).await,
            Err(BackupError::NotEmbedded)
        ));
    }

    #[test]
    fn passwords_never_reach_messages() {
        let url = DatabaseUrl::parse("postgres://gatehouse:s3cret@db:5432/g").expect("valid");
        let shown = format!("{url:?}");
        assert_eq!(shown, "postgres://gatehouse:***@db:5432/g");
        let settings = format!("{:?}", DatabaseSettings::from(&url));
        assert!(!settings.contains("s3cret"), "{settings}");

        let in_query = DatabaseUrl::parse("postgres://db/g?user=g&password=s3cret&sslmode=require").expect("valid");
        assert_eq!(
            format!("{in_query:?}"),
            "postgres://db/g?user=g&password=***&sslmode=require"
        );

        let err = DatabaseUrl::parse("postgres://gatehouse:s3cret@db:port/g").expect_err("bad port");
        let message = err.to_string();
        assert!(!message.contains("s3cret"), "{message}");
        assert!(message.contains("gatehouse:***@db:port/g"), "{message}");
    }

    #[tokio::test]
    async fn a_postgres_url_opens_the_postgres_store_with_its_pool_size() {
        let Some(url) = crate::test_support::postgres::database().await else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = DatabaseSettings {
            url: DatabaseUrl::parse(&url).expect("url"),
            max_connections: 3,
        };
        let blobs = BlobUrl::File(dir.path().join("blobs"));
        let storage = open(settings, &blobs, Durability::Full, JournalTask::LeaveToServer)
            .await
            .expect("open");
        let pools = storage.meta.pool_use();
        assert_eq!(pools.len(), 1);
        assert_eq!((pools[0].name, pools[0].max), ("postgres", 3));
        assert!(storage.meta.registries().await.expect("read").is_empty());
    }

    #[tokio::test]
    async fn backup_and_restore_are_for_the_embedded_stores() {
        let dir = tempfile::tempdir().expect("tempdir");
        let database = DatabaseUrl::Postgres("postgres://g@db/g".into());
        let blobs = BlobUrl::File(dir.path().join("blobs"));
        assert!(matches!(
            restore(dir.path(), &database, &blobs).await,
            Err(BackupError::NotEmbedded)
        ));
    }
}
