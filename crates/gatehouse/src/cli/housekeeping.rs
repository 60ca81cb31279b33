//! `gatehouse check`, `gc`, `backup` and `restore`.

use gatehouse_store::storage::BackupReport;
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
    let report = storage::backup(&stores, &config.database, dest).await?;
    println!("backed up {} to {}", summary(&report), dest.display());
    Ok(())
}

pub(super) async fn restore(config: Config, source: &std::path::Path) -> anyhow::Result<()> {
    let report = storage::restore(source, &config.database, &config.blobs).await?;
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
