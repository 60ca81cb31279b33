//! Checking and collecting blobs, on any backend: every version's blob is there and
//! hashes to its name; blobs no version refers to are found, and removed once they
//! are older than a grace period.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures_util::TryStreamExt as _;
use sha2::{Digest as _, Sha512};

use crate::blobs::{BlobError, BlobKey, Blobs, Collected};
use crate::{BlobReference, Meta};

/// What `check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub versions: usize,
    /// Distinct blobs the versions refer to, all verified.
    pub blobs: usize,
    /// Versions whose blob is not stored.
    pub missing: Vec<BlobReference>,
    /// Versions whose blob is stored but does not hash to its name, or has another size.
    pub corrupt: Vec<BlobReference>,
    /// Stored blobs no version refers to (`gc` removes them).
    pub orphans: Vec<BlobKey>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty()
    }
}

/// Reads and hashes every referenced blob (backend or journal), and lists the orphans.
pub async fn check(meta: &Meta, blobs: &Blobs) -> Result<CheckReport, BlobError> {
    let references = meta.blob_references().await?;
    let mut by_blob: HashMap<&str, Vec<&BlobReference>> = HashMap::new();
    for reference in &references {
        by_blob.entry(&reference.blob.sha512_hex).or_default().push(reference);
    }
    let mut report = CheckReport {
        versions: references.len(),
        blobs: by_blob.len(),
        ..CheckReport::default()
    };
    for (hex, versions) in &by_blob {
        let state = match BlobKey::parse_hex(hex) {
            Ok(key) => verify(blobs, &key, versions[0].blob.size).await?,
            Err(_) => BlobState::Corrupt,
        };
        let into = match state {
            BlobState::Sound => continue,
            BlobState::Missing => &mut report.missing,
            BlobState::Corrupt => &mut report.corrupt,
        };
        into.extend(versions.iter().map(|v| (*v).clone()));
    }
    let referenced: BTreeSet<&str> = by_blob.keys().copied().collect();
    report.orphans = blobs
        .store()
        .list()
        .await?
        .into_iter()
        .filter(|key| !referenced.contains(key.to_hex().as_str()))
        .collect();
    for list in [&mut report.missing, &mut report.corrupt] {
        list.sort_by(|a, b| (&a.registry, &a.package, &a.version).cmp(&(&b.registry, &b.package, &b.version)));
    }
    Ok(report)
}

enum BlobState {
    Sound,
    Missing,
    Corrupt,
}

async fn verify(blobs: &Blobs, key: &BlobKey, size: u64) -> Result<BlobState, BlobError> {
    let Some(stream) = blobs.open(key).await? else {
        return Ok(BlobState::Missing);
    };
    let mut digest = Sha512::new();
    let mut len = 0u64;
    let mut body = stream.body;
    while let Some(piece) = body.try_next().await? {
        len += piece.len() as u64;
        digest.update(&piece);
    }
    Ok(if digest.finalize().as_slice() == key.as_bytes() && len == size {
        BlobState::Sound
    } else {
        BlobState::Corrupt
    })
}

/// What `gc` did (or, in a dry run, would do).
#[derive(Debug, Default)]
pub struct GcReport {
    pub removed: Vec<BlobKey>,
    /// Orphans written or reused within the grace period: kept.
    pub young: usize,
}

/// Removes the blobs no version refers to that are older than `grace`. Safe while
/// publishes run: references are read after the listing (a version committed in
/// between keeps its blob), and the backend keeps a blob reused within `grace`.
pub async fn gc(meta: &Meta, blobs: &Blobs, grace: Duration, dry_run: bool) -> Result<GcReport, BlobError> {
    let stored = blobs.store().list().await?;
    let referenced: BTreeSet<String> = meta
        .blob_references()
        .await?
        .into_iter()
        .map(|r| r.blob.sha512_hex)
        .chain(meta.journaled_keys().await?)
        .collect();
    let mut report = GcReport::default();
    for key in stored.into_iter().filter(|key| !referenced.contains(&key.to_hex())) {
        if dry_run {
            report.removed.push(key);
            continue;
        }
        match blobs.store().collect(&key, grace).await? {
            Collected::Removed => report.removed.push(key),
            Collected::Young => report.young += 1,
            Collected::Missing => {}
        }
    }
    Ok(report)
}
