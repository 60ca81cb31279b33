//! Blobs in an S3-compatible bucket: `PREFIX/sha512/ab/cd/<128 hex>`, the fs store's
//! layout, so a folder synced to a bucket (or back) needs no renaming.
//!
//! An acknowledged S3 write is durable, so there is no fsync and no blob journal.
//! Writes are create-only (`If-None-Match: *`), but nothing depends on it: a key is
//! its content's digest, so overwriting it with the same bytes is harmless (some
//! servers, Garage for one, ignore the condition).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, ObjectStore, ObjectStoreExt as _, PutMode, PutPayload, RetryConfig, WriteMultipart,
};
use sha2::{Digest as _, Sha512};

use super::{BlobError, BlobKey, BlobStore, BlobStream, Collected, StagedBlob};

/// The region when neither the settings nor `AWS_REGION` name one; S3-compatible
/// servers mostly accept any, but it must match what they sign with.
pub const DEFAULT_REGION: &str = "us-east-1";

/// A staged blob up to this size is held in memory and written with one PUT on
/// commit (most tarballs); a larger one goes up in parts while it streams in.
const SINGLE_PUT_MAX: usize = 8 * 1024 * 1024;
/// The size of each part of a multipart upload (S3's minimum is 5 MiB).
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts of one staged blob in flight at once: bounds its memory to a few parts.
const PARTS_IN_FLIGHT: usize = 2;
/// A staging object untouched this long was abandoned by a crash (transfers time out
/// long before); as the fs store's `tmp/`.
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// Where the blobs are and how to sign for them. `Debug` never shows the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// Keys go under it (`a/b`, no leading or trailing `/`); empty: the bucket's root.
    pub prefix: String,
    /// `http(s)://host:port` of an S3-compatible server; `None`: AWS itself. An
    /// `http://` endpoint allows plain HTTP.
    pub endpoint: Option<String>,
    /// `None`: [`DEFAULT_REGION`].
    pub region: Option<String>,
    /// `None`: the AWS chain of object_store's builder (instance metadata, web identity, …).
    pub credentials: Option<S3Credentials>,
}

/// Static credentials for [`S3Settings`].
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

// Hand-written so a secret never reaches a log through `{:?}`.
impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl S3Settings {
    /// A bucket and prefix with nothing else set (AWS, the default region, the AWS
    /// credential chain); see [`S3Settings::with_env`].
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        S3Settings {
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint: None,
            region: None,
            credentials: None,
        }
    }

    /// These settings with the process's environment applied over them:
    /// `AWS_ENDPOINT_URL` (the endpoint), `AWS_REGION` (the region), and
    /// `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`) as the
    /// credentials. Unset or empty variables change nothing.
    pub fn with_env(self) -> Self {
        self.with_env_from(|name| std::env::var(name).ok())
    }

    /// [`S3Settings::with_env`] over any source of variables (tests).
    pub fn with_env_from(mut self, var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| var(name).filter(|value| !value.is_empty());
        if let Some(endpoint) = var("AWS_ENDPOINT_URL") {
            self.endpoint = Some(endpoint);
        }
        if let Some(region) = var("AWS_REGION") {
            self.region = Some(region);
        }
        if let (Some(access_key_id), Some(secret_access_key)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        {
            self.credentials = Some(S3Credentials {
                access_key_id,
                secret_access_key,
                session_token: var("AWS_SESSION_TOKEN"),
            });
        }
        self
    }

    /// `s3://bucket/prefix at ENDPOINT`, for messages: no credential in it.
    pub fn describe(&self) -> String {
        let place = if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        };
        match &self.endpoint {
            Some(endpoint) => format!("{place} at {}", without_userinfo(endpoint)),
            None => format!("{place} on AWS ({})", self.region.as_deref().unwrap_or(DEFAULT_REGION)),
        }
    }
}

/// `scheme://user:password@host…` without `user:password@`.
fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// What the user can check when a request fails this way. object_store types only
/// some failures (not those of a listing, say), so the server's answer is read too.
fn hint(e: &object_store::Error) -> &'static str {
    const DENIED: &str = " (access denied: check the access key, the secret key and the region, \
                          AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION)";
    match e {
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => DENIED,
        object_store::Error::UnknownConfigurationKey { .. } => " (check the S3 settings)",
        _ => {
            let text = e.to_string();
            let says = |words: &[&str]| words.iter().any(|word| text.contains(word));
            if says(&[
                "403 Forbidden",
                "401 Unauthorized",
                "SignatureDoesNotMatch",
                "InvalidAccessKeyId",
                "AccessDenied",
            ]) {
                DENIED
            } else if says(&["NoSuchBucket"]) {
                " (no such bucket: create it first)"
            } else if says(&[
                "Connection refused",
                "dns error",
                "tcp connect error",
                "timed out",
                "error sending request",
            ]) {
                " (cannot reach the endpoint: check AWS_ENDPOINT_URL and the network)"
            } else {
                ""
            }
        }
    }
}

/// Blobs as objects in one bucket, under one prefix. Cheap to clone.
#[derive(Clone)]
pub struct S3BlobStore {
    inner: Arc<Inner>,
}

struct Inner {
    store: AmazonS3,
    /// `PREFIX/sha512` and `PREFIX/tmp`.
    blobs: Path,
    staging: Path,
    /// [`S3Settings::describe`], for errors.
    describe: String,
    /// Staged blobs of this process that have no staging object yet (still in memory,
    /// or a multipart upload in progress); `staged` adds the staging objects.
    live: AtomicUsize,
}

impl S3BlobStore {
    /// Connects and checks that the bucket can be listed (a wrong secret or a missing
    /// bucket fails here, not on the first publish); removes staging objects a crash
    /// left behind.
    pub async fn open(settings: &S3Settings) -> Result<Self, BlobError> {
        let describe = settings.describe();
        let invalid = |cause| BlobError::Backend {
            store: describe.clone(),
            operation: "connecting",
            hint: " (check the bucket, the endpoint and the region)",
            cause: Box::new(cause),
        };
        let prefix = Path::parse(&settings.prefix).map_err(|e| invalid(e.into()))?;
        let endpoint = settings.endpoint.as_deref();
        // `with_client_options` replaces every client option set before it, so
        // allow_http goes in here, not on the builder (where it would be wiped).
        let options = ClientOptions::new()
            .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
            // The whole request, body included: a large tarball streamed to a slow
            // client takes long, so far more than object_store's 30 s.
            .with_timeout(Duration::from_secs(15 * 60))
            .with_connect_timeout(Duration::from_secs(5));
        let retry = RetryConfig {
            max_retries: 4,
            retry_timeout: Duration::from_secs(30),
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(settings.region.as_deref().unwrap_or(DEFAULT_REGION))
            .with_client_options(options)
            .with_retry(retry)
            // Path style (`endpoint/bucket/key`): local servers have no per-bucket hosts.
            .with_virtual_hosted_style_request(false)
            .with_conditional_put(S3ConditionalPut::ETagMatch);
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(credentials) = &settings.credentials {
            builder = builder
                .with_access_key_id(&credentials.access_key_id)
                .with_secret_access_key(&credentials.secret_access_key);
            if let Some(token) = &credentials.session_token {
                builder = builder.with_token(token);
            }
        }
        let store = builder.build().map_err(invalid)?;
        let store = S3BlobStore {
            inner: Arc::new(Inner {
                store,
                blobs: prefix.clone().join("sha512"),
                staging: prefix.join("tmp"),
                describe,
                live: AtomicUsize::new(0),
            }),
        };
        store.remove_abandoned().await?;
        Ok(store)
    }

    fn failed(&self, operation: &'static str) -> impl FnOnce(object_store::Error) -> BlobError + '_ {
        move |cause| BlobError::Backend {
            store: self.inner.describe.clone(),
            operation,
            hint: hint(&cause),
            cause: Box::new(cause),
        }
    }

    /// `PREFIX/sha512/ab/cd/<hex>`: as the fs store's `relative_path`.
    fn path_of(&self, key: &BlobKey) -> Path {
        let hex = key.to_hex();
        self.inner
            .blobs
            .clone()
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(hex.as_str())
    }

    fn staging_path(&self) -> Path {
        self.inner
            .staging
            .clone()
            .join(format!("{:016x}", rand::random::<u64>()).as_str())
    }

    async fn remove_abandoned(&self) -> Result<(), BlobError> {
        let mut staging = self.inner.store.list(Some(&self.inner.staging));
        while let Some(meta) = staging.try_next().await.map_err(self.failed("listing staged blobs"))? {
            if age(meta.last_modified) > ABANDONED_AFTER {
                self.inner
                    .store
                    .delete(&meta.location)
                    .await
                    .map_err(self.failed("removing an abandoned staged blob"))?;
            }
        }
        Ok(())
    }

    /// Writes bytes already checked against `key`. An existing object is success, and
    /// is written again: that makes it young, so garbage collection keeps a blob a
    /// publish is about to refer to (the fs store touches its file likewise).
    async fn put_checked(&self, key: &BlobKey, bytes: Bytes) -> Result<(), BlobError> {
        let path = self.path_of(key);
        let payload = PutPayload::from_bytes(bytes);
        match self
            .inner
            .store
            .put_opts(&path, payload.clone(), PutMode::Create.into())
            .await
        {
            Ok(_) => return Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {}
            // A server refusing the condition may answer before reading the body and
            // close the connection (s3s-fs does): the write then fails as a broken pipe.
            Err(e) => {
                if !self.contains(key).await.unwrap_or(false) {
                    return Err(self.failed("writing a blob")(e));
                }
            }
        }
        self.inner
            .store
            .put(&path, payload)
            .await
            .map_err(self.failed("writing a blob"))?;
        Ok(())
    }
}

/// How long ago `modified` was; zero if it is ahead of this host's clock.
fn age(modified: chrono::DateTime<chrono::Utc>) -> Duration {
    (chrono::Utc::now() - modified).to_std().unwrap_or_default()
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &BlobKey, bytes: Bytes) -> Result<(), BlobError> {
        if Sha512::digest(&bytes).as_slice() != key.as_bytes() {
            return Err(BlobError::DigestMismatch);
        }
        self.put_checked(key, bytes).await
    }

    fn embedded(&self) -> bool {
        false
    }

    /// A write is durable once acknowledged: nothing to sync, no blob journal.
    fn syncs(&self) -> bool {
        false
    }

    async fn put_unsynced(&self, blobs: Vec<(BlobKey, Bytes)>) -> Result<(), BlobError> {
        // Network round trips, not disk flushes: a few at once.
        futures_util::stream::iter(blobs)
            .map(|(key, bytes)| async move { self.put(&key, bytes).await })
            .buffer_unordered(4)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn sync(&self, _keys: &[BlobKey]) -> Result<(), BlobError> {
        Ok(())
    }

    async fn stage(&self) -> Result<Box<dyn StagedBlob>, BlobError> {
        self.inner.live.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(S3StagedBlob {
            store: self.clone(),
            digest: Sha512::new(),
            state: State::Buffered(BytesMut::new()),
            live: true,
        }))
    }

    async fn open(&self, key: &BlobKey) -> Result<Option<BlobStream>, BlobError> {
        let result = match self
            .inner
            .store
            .get_opts(&self.path_of(key), GetOptions::default())
            .await
        {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.failed("reading a blob")(e)),
        };
        let len = result.meta.size;
        // The object's own ETag differs between single and multipart uploads of the
        // same bytes: the key's is the same everywhere.
        Ok(Some(BlobStream {
            len,
            etag: key.etag(),
            body: result.into_stream().map_err(std::io::Error::other).boxed(),
        }))
    }

    async fn size(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        match self.inner.store.head(&self.path_of(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed("reading a blob's size")(e)),
        }
    }

    /// A ranged GET: the object store sends only those bytes.
    async fn open_part(&self, key: &BlobKey, range: std::ops::Range<u64>) -> Result<Option<BlobStream>, BlobError> {
        let options = GetOptions {
            range: Some(object_store::GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        let result = match self.inner.store.get_opts(&self.path_of(key), options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.failed("reading part of a blob")(e)),
        };
        Ok(Some(BlobStream {
            len: range.end - range.start,
            etag: key.etag(),
            body: result.into_stream().map_err(std::io::Error::other).boxed(),
        }))
    }

    async fn signed_url(&self, key: &BlobKey, expires_in: Duration) -> Result<Option<String>, BlobError> {
        use object_store::signer::Signer as _;
        let url = self
            .inner
            .store
            .signed_url(http::Method::GET, &self.path_of(key), expires_in)
            .await
            .map_err(self.failed("signing a URL"))?;
        Ok(Some(url.into()))
    }

    async fn contains(&self, key: &BlobKey) -> Result<bool, BlobError> {
        match self.inner.store.head(&self.path_of(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.failed("looking up a blob")(e)),
        }
    }

    async fn list(&self) -> Result<Vec<BlobKey>, BlobError> {
        // Paged by object_store (ListObjectsV2 continuation tokens); only
        // `PREFIX/sha512/`, so staging objects never show.
        let mut listing = self.inner.store.list(Some(&self.inner.blobs));
        let mut keys = Vec::new();
        while let Some(meta) = listing.try_next().await.map_err(self.failed("listing blobs"))? {
            if let Some(key) = meta.location.filename().and_then(|name| BlobKey::parse_hex(name).ok()) {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    async fn staged(&self) -> Result<usize, BlobError> {
        let objects = self
            .inner
            .store
            .list(Some(&self.inner.staging))
            .try_fold(0usize, |count, _| async move { Ok(count + 1) })
            .await
            .map_err(self.failed("listing staged blobs"))?;
        Ok(objects + self.inner.live.load(Ordering::Relaxed))
    }

    /// S3 cannot move an object aside first as the fs store does: a blob written
    /// again between the age check and the delete is lost (the next `check` reports
    /// it). Grace periods far longer than a publish make that window moot.
    async fn collect(&self, key: &BlobKey, grace: Duration) -> Result<Collected, BlobError> {
        let path = self.path_of(key);
        let meta = match self.inner.store.head(&path).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => return Ok(Collected::Missing),
            Err(e) => return Err(self.failed("looking up a blob")(e)),
        };
        if age(meta.last_modified) < grace {
            return Ok(Collected::Young);
        }
        match self.inner.store.delete(&path).await {
            Ok(()) => Ok(Collected::Removed),
            Err(object_store::Error::NotFound { .. }) => Ok(Collected::Missing),
            Err(e) => Err(self.failed("removing a blob")(e)),
        }
    }
}

enum State {
    /// Up to `SINGLE_PUT_MAX` bytes, written with one PUT on commit.
    Buffered(BytesMut),
    /// Larger: parts uploading to the staging object `path`.
    Multipart { path: Path, upload: WriteMultipart },
    /// Committed or given up: nothing left to clean up.
    Done,
}

struct S3StagedBlob {
    store: S3BlobStore,
    digest: Sha512,
    state: State,
    /// Counted in `Inner::live`.
    live: bool,
}

impl S3StagedBlob {
    /// No longer counted as live: committed, given up, or its staging object exists
    /// (and counts instead).
    fn not_live(&mut self) {
        if std::mem::take(&mut self.live) {
            self.store.inner.live.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[async_trait]
impl StagedBlob for S3StagedBlob {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.digest.update(chunk);
        match &mut self.state {
            State::Buffered(buffer) => {
                buffer.extend_from_slice(chunk);
                if buffer.len() > SINGLE_PUT_MAX {
                    let buffered = std::mem::take(buffer).freeze();
                    let path = self.store.staging_path();
                    let upload = self
                        .store
                        .inner
                        .store
                        .put_multipart(&path)
                        .await
                        .map_err(self.store.failed("starting a multipart upload"))?;
                    let mut upload = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
                    upload.put(buffered);
                    self.state = State::Multipart { path, upload };
                }
                Ok(())
            }
            State::Multipart { upload, .. } => {
                // Backpressure: the stream waits while parts are uploading.
                upload
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(self.store.failed("uploading a part"))?;
                upload.write(chunk);
                Ok(())
            }
            State::Done => Err(std::io::Error::other("blob already committed").into()),
        }
    }

    async fn commit(mut self: Box<Self>, key: &BlobKey) -> Result<(), BlobError> {
        let state = std::mem::replace(&mut self.state, State::Done);
        let matches = self.digest.finalize_reset().as_slice() == key.as_bytes();
        let store = self.store.clone();
        match state {
            State::Done => Err(std::io::Error::other("blob already committed").into()),
            State::Buffered(_) if !matches => Err(BlobError::DigestMismatch),
            State::Buffered(buffer) => {
                let result = store.put_checked(key, buffer.freeze()).await;
                self.not_live();
                result
            }
            State::Multipart { upload, .. } if !matches => {
                self.not_live();
                if let Err(e) = upload.abort().await {
                    tracing::warn!(store = %store.inner.describe, error = %e, "aborting a refused multipart upload");
                }
                Err(BlobError::DigestMismatch)
            }
            State::Multipart { path, upload } => {
                let finished = upload.finish().await;
                self.not_live();
                finished.map_err(store.failed("completing a multipart upload"))?;
                // Content-addressed: a plain copy over an existing blob is harmless,
                // and makes it young for garbage collection.
                let copied = store
                    .inner
                    .store
                    .copy(&path, &store.path_of(key))
                    .await
                    .map_err(store.failed("copying a staged blob into place"));
                if let Err(e) = store.inner.store.delete(&path).await {
                    // Left for `open` to remove once it is old.
                    tracing::warn!(store = %store.inner.describe, error = %e, "removing a staged blob");
                }
                copied
            }
        }
    }
}

impl Drop for S3StagedBlob {
    fn drop(&mut self) {
        self.not_live();
        // Abandoned mid-upload (refused, failed, cut short): abort it off the caller, so
        // the bucket does not keep the parts.
        if let State::Multipart { upload, .. } = std::mem::replace(&mut self.state, State::Done)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let describe = self.store.inner.describe.clone();
            drop(runtime.spawn(async move {
                if let Err(e) = upload.abort().await {
                    tracing::warn!(store = %describe, error = %e, "aborting an abandoned multipart upload");
                }
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_overrides_the_settings() {
        let env = |name: &str| {
            match name {
                "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:9000"),
                "AWS_REGION" => Some("garage"),
                "AWS_ACCESS_KEY_ID" => Some("AKID"),
                "AWS_SECRET_ACCESS_KEY" => Some("s3cret"),
                "AWS_SESSION_TOKEN" => Some(""),
                _ => None,
            }
            .map(str::to_owned)
        };
        let settings = S3Settings::new("gatehouse", "blobs").with_env_from(env);
        assert_eq!(settings.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(settings.region.as_deref(), Some("garage"));
        let credentials = settings.credentials.clone().expect("credentials");
        assert_eq!(
            (credentials.access_key_id.as_str(), credentials.session_token),
            ("AKID", None)
        );
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cret"), "{shown}");

        let untouched = S3Settings::new("gatehouse", "").with_env_from(|_| None);
        assert_eq!(untouched, S3Settings::new("gatehouse", ""));
        assert_eq!(untouched.describe(), "s3://gatehouse on AWS (us-east-1)");
    }

    #[test]
    fn descriptions_name_the_endpoint_without_credentials() {
        let mut settings = S3Settings::new("b", "p/q");
        settings.endpoint = Some("https://user:pw@s3.example:9000/x".into());
        assert_eq!(settings.describe(), "s3://b/p/q at https://s3.example:9000/x");
    }
}
