//! `gatehouse check`, `gc`, `backup`, `restore` and `migrate`.

use std::io::IsTerminal as _;

use gatehouse_store::storage::{BackupReport, BlobSettings, BlobUrl, DatabaseSettings, JournalTask};
use gatehouse_store::transfer::{self, Progress};
use gatehouse_store::{housekeeping, storage};

use super::*;

pub(super) async fn check(config: Config) -> anyhow::Result<()> {
    let storage = open_stores(&config).await?;
    let report = housekeeping::check(&storage.meta, &storage.blobs).await?;
    for reference in &report.missing {
        println!(
            "missing\t{}\t{}@{}\tblob {} is not stored",
            reference.registry, reference.package, reference.version, reference.blob.sha512_hex
        );
    }
    for reference in &report.corrupt {
        println!(
            "corrupt\t{}\t{}@{}\tblob {} does not hash to its name (or has another size)",
            reference.registry, reference.package, reference.version, reference.blob.sha512_hex
        );
    }
    for key in &report.orphans {
        println!(
            "orphan\t-\t-\tblob {} is referred to by no version (gatehouse gc removes it)",
            key.to_hex()
        );
    }
    println!(
        "checked {} versions and {} blobs: {} missing, {} corrupt, {} orphans",
        report.versions,
        report.blobs,
        report.missing.len(),
        report.corrupt.len(),
        report.orphans.len()
    );
    if !report.is_clean() {
        bail!(
            "{} versions have no sound tarball",
            report.missing.len() + report.corrupt.len()
        );
    }
    Ok(())
}

pub(super) async fn gc(config: Config, dry_run: bool, grace: &str) -> anyhow::Result<()> {
    let grace = tokens::parse_duration(grace)?;
    let storage = open_stores(&config).await?;
    let report = housekeeping::gc(&storage.meta, &storage.blobs, grace, dry_run).await?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for key in &report.removed {
        println!("{verb}\t{}", key.to_hex());
    }
    if dry_run {
        println!(
            "{} blobs are referred to by no version; gc removes those untouched for {}",
            report.removed.len(),
            humantime(grace)
        );
    } else {
        println!(
            "removed {} blobs no version refers to; kept {} written or reused within {}",
            report.removed.len(),
            report.young,
            humantime(grace)
        );
    }
    Ok(())
}

fn humantime(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        s if s > 0 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s > 0 && s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

pub(super) async fn backup(config: Config, dest: &std::path::Path) -> anyhow::Result<()> {
    let stores = open_stores(&config).await?;
    let report = storage::backup(&stores, &config.database.url, dest).await?;
    println!("backed up {} to {}", summary(&report), dest.display());
    Ok(())
}

pub(super) async fn restore(config: Config, source: &std::path::Path) -> anyhow::Result<()> {
    let report = storage::restore(source, &config.database.url, &config.blobs.url()).await?;
    println!(
        "restored {} from {}; verify with: gatehouse check",
        summary(&report),
        source.display()
    );
    Ok(())
}

fn summary(report: &BackupReport) -> String {
    format!(
        "{} versions and {} tarballs ({} bytes)",
        report.versions, report.blobs, report.bytes
    )
}

pub(super) async fn migrate(config: Config, to_database: &str, to_blobs: &str) -> anyhow::Result<()> {
    let database = DatabaseUrl::parse(to_database).context("--to-database")?;
    let blobs = BlobUrl::parse(to_blobs).context("--to-blobs")?;
    let (to_db_url, to_blob_url) = (format!("{database:?}"), format!("{blobs:?}"));
    if database == config.database.url || blobs == config.blobs.url() {
        bail!("the destination is this install's own store; name other stores to copy it to");
    }
    let from = open_stores(&config).await?;
    let to = storage::open(
        DatabaseSettings::new(database),
        BlobSettings::from_url(&blobs),
        config.durability,
        JournalTask::LeaveToServer,
    )
    .await?;
    let mut progress = Printer::new();
    let summary = transfer::copy(&from, &to, &mut progress).await?;
    for (blob, why) in &summary.bad_blobs {
        println!("failed\tblob {blob}\t{why}");
    }
    println!(
        "copied {} rows ({} new) and {} tarballs ({} new, each verified) to {to_db_url} and {to_blob_url}",
        summary.rows,
        summary.new_rows,
        summary.blobs - summary.bad_blobs.len() as u64,
        summary.new_blobs
    );
    if !summary.bad_blobs.is_empty() {
        bail!(
            "{} tarballs could not be copied (see above); run gatehouse check here",
            summary.bad_blobs.len()
        );
    }
    println!("next: point the servers at the new stores, start them, and run gatehouse check there");
    Ok(())
}

/// Progress on stderr: one line rewritten in place on a terminal, else a line per
/// thousand items and one per table.
struct Printer {
    terminal: bool,
}

impl Printer {
    fn new() -> Self {
        Printer {
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// `line` about `count` items so far; `done` at the end of them.
    fn say(&self, line: &str, count: u64, done: bool) {
        if self.terminal {
            eprint!("\r\x1b[K{line}");
            if done {
                eprintln!();
            }
        } else if done || (count > 0 && count.is_multiple_of(1000)) {
            eprintln!("{line}");
        }
    }
}

impl Progress for Printer {
    fn table(&mut self, table: &str, copied: u64, new: u64, done: bool) {
        self.say(&format!("{table}: {copied} rows ({new} new)"), copied, done);
    }

    fn blobs(&mut self, copied: u64, total: u64, new: u64) {
        self.say(
            &format!("tarballs: {copied} of {total} ({new} new)"),
            copied,
            copied == total,
        );
    }
}
