//! Pulling a tarball from an upstream into a registry, on first download.
//!
//! A pull is a background task that reads the upstream's body piece by piece and, as
//! each piece arrives, hashes it, writes it to a staged blob and hands it to every
//! client downloading that version (the first and any that join while it runs: one
//! upstream request however many ask). The last byte is held back until the whole
//! tarball has matched the upstream's `dist.integrity`/`shasum` and passed admission
//! (source `upstream:…`), so no client ever receives a complete tarball that was
//! refused: on a mismatch the downloads are cut short and nothing is stored.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt as _, Stream, StreamExt as _};
use gatehouse_npm::integrity::{self, DigestWriter};
use gatehouse_npm::name::PackageName;
use gatehouse_npm::version::Version;
use gatehouse_store::blobs::{BlobKey, Blobs};
use gatehouse_store::{BlobRef, Meta, Registry, RegistryId};
use serde_json::Value;
use tokio::sync::watch;

use super::client::{self, UpstreamError};
use super::spec::origin;
use super::{Source, Upstreams};
use crate::admission::{Admission, AdmissionError, Candidate, Origin, PolicyRefusal, Refusal};
use crate::packument_cache::{self, CacheError, PackumentCache, Prepared, RemoteTarball};

/// A failed pull. Cloned to every download that follows it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PullError {
    #[error("version not found")]
    NotFound,
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The upstream served something other than what it declared; nothing was stored.
    #[error("{0}")]
    BadUpstream(String),
    /// Admission refused the version; nothing was stored.
    #[error("upstream version {name}@{version} refused: {refusal}")]
    Refused {
        name: PackageName,
        version: String,
        refusal: Box<Refusal>,
    },
    /// The registry's policy does not let the version in; nothing was stored.
    #[error(transparent)]
    Policy(#[from] PolicyRefusal),
    /// Storage failed; the cause is kept for the log.
    #[error("the pull failed: {0}")]
    Internal(Arc<dyn std::error::Error + Send + Sync>),
}

impl From<CacheError> for PullError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::Absent => PullError::NotFound,
            other => internal(other),
        }
    }
}

/// Registry upstream chains are followed this deep when pulling.
const MAX_CHAIN: u8 = 4;

/// Downloads start sending once this much of a pulled tarball has arrived.
const STREAM_FROM: usize = 64 * 1024;

type PullKey = (RegistryId, PackageName, String);

/// Pulls tarballs into registries; keeps the pulls in flight, so concurrent downloads
/// of one version share one.
pub struct Pulls {
    running: Mutex<HashMap<PullKey, Arc<Transfer>>>,
    meta: Meta,
    blobs: Blobs,
    packuments: PackumentCache,
    upstreams: Arc<Upstreams>,
    admission: Arc<Admission>,
}

impl Pulls {
    pub fn new(
        meta: Meta,
        blobs: Blobs,
        packuments: PackumentCache,
        upstreams: Arc<Upstreams>,
        admission: Arc<Admission>,
    ) -> Arc<Self> {
        Arc::new(Pulls {
            running: Mutex::default(),
            meta,
            blobs,
            packuments,
            upstreams,
            admission,
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<PullKey, Arc<Transfer>>> {
        // A poisoned map only means a panic elsewhere mid-insert; the map itself is fine.
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The blob of `name@version` in `registry`, pulling it from an upstream if needed
    /// and waiting until it is stored (promotion, `HEAD`).
    pub async fn ensure_local(
        self: &Arc<Self>,
        registry: &Registry,
        name: &PackageName,
        version: &str,
    ) -> Result<BlobRef, PullError> {
        match self.download(registry, name, version).await? {
            Download::Held(blob) => Ok(blob),
            Download::Streaming(follower) => follower.finished().await,
        }
    }

    /// Starts (or joins) the download of `name@version` from `registry`. Returns once
    /// the first bytes are ready to send, or with the error if the pull failed before that.
    pub async fn download(
        self: &Arc<Self>,
        registry: &Registry,
        name: &PackageName,
        version: &str,
    ) -> Result<Download, PullError> {
        self.download_at_depth(registry, name, version, 0).await
    }

    // Boxed: a pull through a registry upstream downloads from that registry in turn.
    fn download_at_depth<'a>(
        self: &'a Arc<Self>,
        registry: &'a Registry,
        name: &'a PackageName,
        version: &'a str,
        depth: u8,
    ) -> BoxFuture<'a, Result<Download, PullError>> {
        Box::pin(async move {
            let prepared = self.packuments.get(registry, name).await?;
            // Withheld by this registry's policy (or, through a registry upstream, by
            // that registry's): never pulled, never served.
            if let Some(withheld) = prepared.policy.withheld.get(version) {
                return Err(PullError::Policy(withheld.refusal.clone()));
            }
            if let Some(blob) = prepared.tarballs.get(version) {
                return Ok(Download::Held(blob.clone()));
            }
            if !prepared.remote.contains_key(version) {
                return Err(PullError::NotFound);
            }
            let key = (registry.id, name.clone(), version.to_owned());
            let transfer = {
                let mut running = self.running();
                match running.get(&key) {
                    Some(transfer) => transfer.clone(),
                    None => {
                        let transfer = Arc::new(Transfer::new());
                        running.insert(key.clone(), transfer.clone());
                        let job = Job {
                            pulls: self.clone(),
                            registry: registry.clone(),
                            name: name.clone(),
                            version: version.to_owned(),
                            prepared,
                            depth,
                        };
                        tokio::spawn(job.run(key, transfer.clone()));
                        transfer
                    }
                }
            };
            Follower::join(transfer).await
        })
    }
}

/// What a download of a version gets.
pub enum Download {
    /// The registry holds the blob: serve it from storage.
    Held(BlobRef),
    /// It is being pulled: follow the transfer.
    Streaming(Follower),
}

/// What a pull has done so far, shared by every download following it.
#[derive(Default)]
struct Progress {
    /// Pieces released to followers, in order.
    released: Vec<Bytes>,
    released_bytes: usize,
    /// The length the source announced.
    len: Option<u64>,
    outcome: Option<Result<BlobRef, PullError>>,
}

impl Progress {
    fn release(&mut self, piece: Bytes) {
        self.released_bytes += piece.len();
        self.released.push(piece);
    }
}

struct Transfer {
    progress: watch::Sender<Progress>,
}

impl Transfer {
    fn new() -> Self {
        Transfer {
            progress: watch::Sender::new(Progress::default()),
        }
    }

    fn announce(&self, len: Option<u64>) {
        self.progress.send_modify(|p| p.len = len);
    }

    fn release(&self, piece: Bytes) {
        self.progress.send_modify(|p| p.release(piece));
    }

    fn finish(&self, held_back: Option<Bytes>, outcome: Result<BlobRef, PullError>) {
        self.progress.send_modify(|p| {
            if let (Some(piece), Ok(_)) = (held_back, &outcome) {
                p.release(piece);
            }
            p.outcome = Some(outcome);
        });
    }
}

/// One download following a transfer from its first piece.
pub struct Follower {
    /// Keeps the transfer's sender alive for as long as this download reads from it.
    _transfer: Arc<Transfer>,
    progress: watch::Receiver<Progress>,
    /// The length announced by the source, when it did (for `Content-Length`).
    pub len: Option<u64>,
    sent: usize,
}

impl Follower {
    /// Waits until [`STREAM_FROM`] bytes are released or the pull has ended. A pull that
    /// fails before that is an error here, so the client reads a status and a reason
    /// instead of a cut body; most tarballs are smaller and are checked before any byte
    /// goes out.
    async fn join(transfer: Arc<Transfer>) -> Result<Download, PullError> {
        let mut progress = transfer.progress.subscribe();
        let len = {
            let ready = progress
                .wait_for(|p| p.released_bytes >= STREAM_FROM || p.outcome.is_some())
                .await
                .map_err(|_| ended())?;
            match &ready.outcome {
                Some(Ok(blob)) => return Ok(Download::Held(blob.clone())),
                // Nothing sent to this client yet: it can still get a status and a reason.
                Some(Err(e)) => return Err(e.clone()),
                _ => ready.len,
            }
        };
        Ok(Download::Streaming(Follower {
            _transfer: transfer,
            progress,
            len,
            sent: 0,
        }))
    }

    /// The next piece to send, or the end: `Ok(None)` once the whole tarball has been
    /// sent, `Err` when the pull failed (the download must be cut short).
    async fn next(&mut self) -> Result<Option<Bytes>, PullError> {
        loop {
            {
                let progress = self.progress.borrow_and_update();
                if let Some(piece) = progress.released.get(self.sent) {
                    self.sent += 1;
                    return Ok(Some(piece.clone()));
                }
                match &progress.outcome {
                    Some(Ok(_)) => return Ok(None),
                    Some(Err(e)) => return Err(e.clone()),
                    None => {}
                }
            }
            self.progress.changed().await.map_err(|_| ended())?;
        }
    }

    /// The bytes as they are released; ends with an error if the pull fails.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, PullError>> + Send + 'static {
        futures_util::stream::unfold(Some(self), |state| async move {
            let mut follower = state?;
            match follower.next().await {
                Ok(Some(piece)) => Some((Ok(piece), Some(follower))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }

    async fn finished(mut self) -> Result<BlobRef, PullError> {
        let done = self
            .progress
            .wait_for(|p| p.outcome.is_some())
            .await
            .map_err(|_| ended())?;
        done.outcome.clone().unwrap_or_else(|| Err(ended()))
    }
}

/// A transfer dropped before it reported an outcome (it never should).
fn ended() -> PullError {
    internal_message("pull ended without an outcome")
}

/// Where a pull reads from.
enum Feed {
    Upstream(client::Body),
    /// Another registry of this server holds the blob.
    Blob(BoxStream<'static, std::io::Result<Bytes>>),
    /// Another registry of this server is pulling it right now.
    Follow(Follower),
}

impl Feed {
    async fn next(&mut self) -> Result<Option<Bytes>, PullError> {
        match self {
            Feed::Upstream(body) => Ok(body.chunk().await?),
            Feed::Blob(body) => body.next().await.transpose().map_err(internal),
            Feed::Follow(follower) => follower.next().await,
        }
    }
}

/// One pull, run in the background so that it completes (and is stored) even when the
/// client that started it goes away.
struct Job {
    pulls: Arc<Pulls>,
    registry: Registry,
    name: PackageName,
    version: String,
    prepared: Arc<Prepared>,
    depth: u8,
}

impl Job {
    async fn run(self, key: PullKey, transfer: Arc<Transfer>) {
        let mut held_back = None;
        let outcome = AssertUnwindSafe(self.pull(&transfer, &mut held_back))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(internal_message("the pull failed unexpectedly")));
        if let Err(e) = &outcome {
            tracing::warn!(registry.name = %self.registry.name, pkg.name = %self.name, pkg.version = %self.version, error = %e, "pull failed");
        }
        transfer.finish(held_back, outcome);
        self.pulls.running().remove(&key);
    }

    /// Streams the tarball through to followers and storage, then admits it. The last
    /// byte received is always in `held_back`: released only once the tarball is admitted.
    async fn pull(&self, transfer: &Transfer, held_back: &mut Option<Bytes>) -> Result<BlobRef, PullError> {
        let Some(offered) = self.prepared.remote.get(&self.version) else {
            return Err(PullError::NotFound);
        };
        // The manifest is looked up in the (possibly huge) document meanwhile.
        let manifest = tokio::spawn(packument_cache::version_manifest(
            self.prepared.clone(),
            self.version.clone(),
        ));
        let (mut feed, len) = self.open(offered).await?;
        transfer.announce(len);
        let mut staged = self.pulls.blobs.stage().await.map_err(internal)?;
        let mut digests = DigestWriter::new();
        let mut whole = BytesMut::with_capacity(len.map_or(0, |len| len as usize));
        let received = async {
            while let Some(piece) = feed.next().await? {
                if piece.is_empty() {
                    continue;
                }
                // Hold back the last byte received: the download can't complete before
                // the tarball is admitted.
                let tail = piece.slice(piece.len() - 1..);
                if let Some(previous) = held_back.replace(tail) {
                    transfer.release(previous);
                }
                if piece.len() > 1 {
                    transfer.release(piece.slice(..piece.len() - 1));
                }
                digests.update(&piece);
                whole.extend_from_slice(&piece);
                staged.write(&piece).await.map_err(internal)?;
            }
            Ok::<_, PullError>(())
        }
        .await;
        if let Source::Remote { remote, .. } = offered.source.as_ref() {
            let fetcher = &self.pulls.upstreams.fetcher;
            match &received {
                Ok(()) => fetcher.note_success(remote.id),
                Err(PullError::Upstream(e)) => fetcher.note_failure(remote.id, e),
                Err(_) => {}
            }
        }
        received?;
        let digests = digests.finish();
        let label = offered.source.label();
        let mut manifest = manifest
            .await
            .map_err(internal)?
            .map_err(internal)?
            .ok_or(PullError::NotFound)?;
        let dist = manifest.get("dist").and_then(Value::as_object);
        integrity::verify_declared(
            &digests,
            dist.and_then(|d| d.get("integrity")).and_then(Value::as_str),
            dist.and_then(|d| d.get("shasum")).and_then(Value::as_str),
        )
        .map_err(|e| {
            PullError::BadUpstream(format!(
                "upstream {label} served a bad tarball for {}@{}: {e}",
                self.name, self.version
            ))
        })?;
        let version = Version::parse(&self.version).map_err(|e| PullError::BadUpstream(e.to_string()))?;
        if let Some(Value::Object(dist)) = manifest.get_mut("dist") {
            dist.remove("tarball");
        }
        let published_at = offered
            .version
            .published
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis());
        let blob = BlobRef {
            sha512_hex: digests.sha512_hex(),
            size: whole.len() as u64,
        };
        let admitted = self
            .pulls
            .admission
            .admit(Candidate {
                registry: &self.registry,
                target: None,
                name: self.name.clone(),
                version,
                manifest,
                tarball: whole.freeze(),
                staged: Some(staged),
                digests,
                tags: Vec::new(),
                publisher: None,
                origin: Origin::Upstream { label, published_at },
                client_addr: None,
                policy: Some(self.prepared.policy.clone()),
                // An upstream's attestations are served from the upstream (passed through).
                provenance: None,
            })
            .await;
        match admitted {
            // Someone else pulled (or published) it meanwhile: same version, fine.
            Ok(_) | Err(AdmissionError::VersionExists(_)) => Ok(blob),
            Err(AdmissionError::Policy(refusal)) => Err(PullError::Policy(refusal)),
            Err(AdmissionError::Refused(refusal)) => Err(PullError::Refused {
                name: self.name.clone(),
                version: self.version.clone(),
                refusal: Box::new(refusal),
            }),
            Err(e) => Err(internal(e)),
        }
    }

    /// Opens the body of the version offered: an upstream's HTTP response, or another
    /// registry's blob or pull. Returns the announced length with it.
    async fn open(&self, offered: &RemoteTarball) -> Result<(Feed, Option<u64>), PullError> {
        let (name, version) = (&self.name, &self.version);
        match offered.source.as_ref() {
            Source::Remote { remote, label, .. } => {
                let fetcher = &self.pulls.upstreams.fetcher;
                if fetcher.is_suspended(remote.id) {
                    return Err(UpstreamError::CircuitOpen(label.clone()).into());
                }
                let url = match offered.version.tarball.as_deref() {
                    Some(url) => url.to_owned(),
                    None => format!("{}{name}/-/{}-{version}.tgz", remote.base, name.basename()),
                };
                // Only fetch from the upstream's own origin: a packument must not be able
                // to send us to another host (or an internal address).
                if origin(&url) != origin(&remote.base) {
                    return Err(PullError::BadUpstream(format!(
                        "upstream {label} lists a tarball on another host ({url}); refused"
                    )));
                }
                let body = self
                    .pulls
                    .upstreams
                    .client
                    .tarball(&url, &remote.auth)
                    .await
                    .inspect_err(|e| fetcher.note_failure(remote.id, e))?;
                let len = body.len;
                Ok((Feed::Upstream(body), len))
            }
            Source::Registry(other) => {
                if self.depth >= MAX_CHAIN {
                    return Err(PullError::BadUpstream("registry upstream chain too deep".into()));
                }
                let other = self
                    .pulls
                    .meta
                    .registry(other)
                    .await
                    .map_err(internal)?
                    .ok_or(PullError::NotFound)?;
                match self
                    .pulls
                    .download_at_depth(&other, name, version, self.depth + 1)
                    .await?
                {
                    // Read as every download reads it: a version published moments ago
                    // is in the blob journal until its file is written.
                    Download::Held(blob) => {
                        let key = BlobKey::parse_hex(&blob.sha512_hex).map_err(internal)?;
                        let stream = self
                            .pulls
                            .blobs
                            .open(&key)
                            .await
                            .map_err(internal)?
                            .ok_or_else(|| internal_message(format!("blob {} is missing", blob.sha512_hex)))?;
                        Ok((Feed::Blob(stream.body), Some(stream.len)))
                    }
                    Download::Streaming(follower) => {
                        let len = follower.len;
                        Ok((Feed::Follow(follower), len))
                    }
                }
            }
        }
    }
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> PullError {
    PullError::Internal(Arc::new(e))
}

fn internal_message(message: impl Into<String>) -> PullError {
    PullError::Internal(Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(
        message.into(),
    )))
}
