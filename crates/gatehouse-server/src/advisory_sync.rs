//! The scheduled advisory sync (`[advisories] sync_url`, `sync_every`): for teams
//! that mirror an OSV export (the OSV project's `npm/all.zip`, a GitHub Advisory
//! Database checkout). Each run reads the whole export and makes the database exactly
//! it (`--replace`: withdrawn and deleted advisories go), in one transaction; a run
//! that fails (unreachable, malformed) changes nothing and is tried again next time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use gatehouse_policy::advisory::import;
use gatehouse_store::ImportSummary;
use tokio::io::AsyncWriteExt as _;

use crate::app::App;
use crate::services::Actor;

/// The largest export downloaded (the OSV npm export is about 210 MB).
const MAX_DOWNLOAD: u64 = 2 * 1024 * 1024 * 1024;
/// A download that takes longer is given up (and tried again next time).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot download {url}: {cause}")]
    Download { url: String, cause: String },
    #[error("{url} is larger than {MAX_DOWNLOAD} bytes")]
    TooLarge { url: String },
    #[error("cannot write the download to {path}: {cause}")]
    Write { path: PathBuf, cause: std::io::Error },
    #[error(transparent)]
    Import(#[from] import::ImportError),
    #[error("the import task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("storing the import failed: {0}")]
    Store(#[from] crate::services::ServiceError),
}

/// Starts the schedule, when one is configured: a first run at once, then one every
/// `sync_every`.
pub fn spawn(app: &Arc<App>) {
    let (Some(source), Some(every)) = (app.config.advisories.sync_url.clone(), app.config.advisories.sync_every) else {
        return;
    };
    let app = Arc::clone(app);
    let every = Duration::from_millis(u64::try_from(every.millis).unwrap_or(u64::MAX));
    tokio::spawn(async move {
        loop {
            match sync_once(&app, &source).await {
                Ok(summary) => tracing::info!(
                    source = %source,
                    added = summary.added,
                    updated = summary.updated,
                    removed = summary.removed,
                    skipped = summary.skipped,
                    "advisories synced"
                ),
                Err(e) => {
                    tracing::warn!(source = %source, error = %e, "advisory sync failed; the database is unchanged")
                }
            }
            tokio::time::sleep(every).await;
        }
    });
}

/// One run: read the export (downloading it first for a URL) and store it.
pub async fn sync_once(app: &App, source: &str) -> Result<ImportSummary, SyncError> {
    let downloaded = if source.starts_with("http://") || source.starts_with("https://") {
        Some(download(source, &app.config.data_dir).await?)
    } else {
        None
    };
    let path = downloaded
        .as_ref()
        .map_or_else(|| PathBuf::from(source), |d| d.path().to_owned());
    let read = tokio::task::spawn_blocking(move || import::import_path(&path)).await??;
    drop(downloaded);
    let summary = app
        .services
        .import_advisories(
            &Actor::system(),
            &read.advisories,
            read.skipped.len() as u64,
            source,
            true,
        )
        .await?;
    Ok(summary)
}

/// Streams `url` into a temporary file in the data directory, within the bounds.
async fn download(url: &str, data_dir: &Path) -> Result<tempfile::NamedTempFile, SyncError> {
    let failed = |cause: String| SyncError::Download {
        url: url.to_owned(),
        cause,
    };
    let file = tempfile::Builder::new()
        .prefix(".advisories-")
        .tempfile_in(data_dir)
        .map_err(|cause| SyncError::Write {
            path: data_dir.to_owned(),
            cause,
        })?;
    let client = reqwest::Client::builder()
        .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let work = async {
        let response = client.get(url).send().await.map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        let mut out = tokio::fs::File::from_std(file.reopen().map_err(|cause| SyncError::Write {
            path: file.path().to_owned(),
            cause,
        })?);
        let mut written: u64 = 0;
        let mut body = response.bytes_stream();
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| failed(e.to_string()))?;
            written += piece.len() as u64;
            if written > MAX_DOWNLOAD {
                return Err(SyncError::TooLarge { url: url.to_owned() });
            }
            out.write_all(&piece).await.map_err(|cause| SyncError::Write {
                path: file.path().to_owned(),
                cause,
            })?;
        }
        out.flush().await.map_err(|cause| SyncError::Write {
            path: file.path().to_owned(),
            cause,
        })?;
        Ok(())
    };
    tokio::time::timeout(DOWNLOAD_TIMEOUT, work)
        .await
        .map_err(|_| failed("timed out".into()))??;
    Ok(file)
}
