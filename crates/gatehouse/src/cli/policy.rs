//! The firewall's commands: `gatehouse policy …`, `gatehouse quarantine …` and
//! `gatehouse advisories …`.

use gatehouse_policy::advisory::import;
use gatehouse_policy::document::Policy;
use gatehouse_server::lockfile_check::{self, CheckReport};
use gatehouse_server::services::ExceptionRequest;
use gatehouse_store::DecisionQuery;

use super::packages::command_app;
use super::*;

#[derive(Subcommand, Debug)]
pub(super) enum PolicyCommand {
    /// Print a registry's policy (the default one when it has none of its own).
    Show { registry: String },
    /// Set a registry's policy from a TOML file; a file with errors changes nothing.
    Set {
        registry: String,
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "default",
            conflicts_with = "default"
        )]
        file: Option<PathBuf>,
        /// Go back to the default policy.
        #[arg(long)]
        default: bool,
    },
    /// What the policy would not serve of a project: every version a lockfile pins.
    /// Exit status 0 when nothing is held back, 1 when anything is, 2 on an error.
    Check {
        registry: String,
        /// package-lock.json (v2, v3), pnpm-lock.yaml, yarn.lock (classic or berry) or bun.lock.
        #[arg(long, value_name = "FILE")]
        lockfile: PathBuf,
        /// Judge by this policy instead of the registry's (before it goes live).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The decisions stored for a registry (every one that is not `allow`, audit
    /// mode's included), newest first.
    Decisions {
        registry: String,
        #[arg(long, value_name = "NAME")]
        package: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Time-limited waivers of one rule for a package's versions.
    #[command(subcommand)]
    Exception(ExceptionCommand),
}

#[derive(Subcommand, Debug)]
pub(super) enum ExceptionCommand {
    /// Waive RULE for NAME@RANGE until it expires.
    Add {
        registry: String,
        /// NAME@RANGE, e.g. lodash@4.17.20 or @acme/ui@^2
        spec: String,
        /// vulnerabilities, licenses, release_age, install_scripts, provenance, manifest or deny.
        #[arg(long)]
        rule: String,
        /// A duration from now (7d, 12h) or an RFC 3339 time; required.
        #[arg(long)]
        expires: String,
        #[arg(long)]
        reason: String,
    },
    /// List a registry's exceptions, with their ids.
    List { registry: String },
    /// Remove an exception by id.
    Remove { registry: String, id: i64 },
}

#[derive(Subcommand, Debug)]
pub(super) enum QuarantineCommand {
    /// Quarantined versions waiting for review, of one registry or all.
    List { registry: Option<String> },
    /// Serve a quarantined version from now on.
    Approve {
        registry: String,
        /// NAME@VERSION
        spec: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Block a quarantined version.
    Reject {
        registry: String,
        /// NAME@VERSION
        spec: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum AdvisoryCommand {
    /// Import OSV advisories: one JSON file, a folder of them (a GitHub Advisory
    /// Database checkout), or a zip with one file per advisory (the OSV project's
    /// npm/all.zip). All or nothing: a malformed file changes nothing.
    Import {
        path: PathBuf,
        /// Make the database exactly this import (drop advisories it lacks).
        #[arg(long)]
        replace: bool,
    },
    /// How many advisories, the newest one, the last import.
    Stats,
}

/// A command's outcome as an exit status of its own (`policy check`: 1 held back, 2 error).
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

pub(super) async fn policy_command(config: Config, cmd: PolicyCommand) -> anyhow::Result<()> {
    if let PolicyCommand::Check {
        registry,
        lockfile,
        policy,
        json,
    } = cmd
    {
        return check(config, &registry, &lockfile, policy.as_deref(), json).await;
    }
    let (_, services) = open(&config).await?;
    match cmd {
        PolicyCommand::Check { .. } => unreachable!("handled above"),
        PolicyCommand::Show { registry } => {
            let registry = find_registry(&services, &registry).await?;
            let (document, default) = services.policy_document(&registry).await?;
            if default {
                println!("# registry {} has the default policy", registry.name);
            }
            print!("{document}");
        }
        PolicyCommand::Set { registry, file, .. } => {
            let registry = find_registry(&services, &registry).await?;
            let document = match &file {
                Some(file) => Some(
                    tokio::fs::read_to_string(file)
                        .await
                        .with_context(|| format!("cannot read {}", file.display()))?,
                ),
                None => None,
            };
            services
                .set_policy(&Actor::cli(), &registry, document.as_deref())
                .await
                .with_context(|| match &file {
                    Some(file) => format!("{} (the policy of {} is unchanged)", file.display(), registry.name),
                    None => registry.name.to_string(),
                })?;
            match file {
                Some(file) => println!("the policy of {} is now {}", registry.name, file.display()),
                None => println!("{} has the default policy again", registry.name),
            }
        }
        PolicyCommand::Decisions {
            registry,
            package,
            limit,
            json,
        } => {
            let registry = find_registry(&services, &registry).await?;
            let query = DecisionQuery {
                package,
                limit,
                ..DecisionQuery::default()
            };
            print_decisions(&services.decisions(&registry, &query).await?, json)?;
        }
        PolicyCommand::Exception(cmd) => exception(&services, cmd).await?,
    }
    Ok(())
}

async fn exception(services: &Services, cmd: ExceptionCommand) -> anyhow::Result<()> {
    match cmd {
        ExceptionCommand::Add {
            registry,
            spec,
            rule,
            expires,
            reason,
        } => {
            let registry = find_registry(services, &registry).await?;
            let request = ExceptionRequest {
                spec: &spec,
                rule: &rule,
                expires: &expires,
                reason: &reason,
            };
            let row = services.add_exception(&Actor::cli(), &registry, &request).await?;
            println!(
                "exception #{} in {}: {}@{} is exempt from {} until {}",
                row.id,
                registry.name,
                row.package,
                row.range,
                row.rule,
                iso_time(row.expires_at)
            );
        }
        ExceptionCommand::List { registry } => {
            let registry = find_registry(services, &registry).await?;
            println!("ID\tPACKAGE\tRANGE\tRULE\tEXPIRES\tBY\tREASON");
            let now = gatehouse_store::now_millis();
            for row in services.exceptions(&registry).await? {
                let expires = if row.expires_at <= now {
                    format!("{} (expired)", iso_time(row.expires_at))
                } else {
                    iso_time(row.expires_at)
                };
                println!(
                    "{}\t{}\t{}\t{}\t{expires}\t{}\t{}",
                    row.id,
                    row.package,
                    row.range,
                    row.rule,
                    row.created_by.as_deref().unwrap_or("-"),
                    row.reason
                );
            }
        }
        ExceptionCommand::Remove { registry, id } => {
            let registry = find_registry(services, &registry).await?;
            let row = services.remove_exception(&Actor::cli(), &registry, id).await?;
            println!(
                "removed exception #{id} ({}@{} --rule {}) from {}",
                row.package, row.range, row.rule, registry.name
            );
        }
    }
    Ok(())
}

pub(super) async fn quarantine_command(config: Config, cmd: QuarantineCommand) -> anyhow::Result<()> {
    let (_, services) = open(&config).await?;
    match cmd {
        QuarantineCommand::List { registry } => {
            let registries = match registry {
                Some(name) => vec![find_registry(&services, &name).await?],
                None => services.registries().await?,
            };
            println!("REGISTRY\tPACKAGE\tVERSION\tRULE\tSINCE\tREASON");
            for registry in registries {
                let query = DecisionQuery {
                    unreviewed: true,
                    limit: 10_000,
                    ..DecisionQuery::default()
                };
                for row in services.decisions(&registry, &query).await? {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        registry.name,
                        row.package,
                        row.version,
                        row.rule.as_deref().unwrap_or("-"),
                        iso_time(row.decided_at),
                        row.reason
                    );
                }
            }
        }
        QuarantineCommand::Approve { registry, spec, reason } => {
            let registry = find_registry(&services, &registry).await?;
            services
                .review(&Actor::cli(), &registry, &spec, true, reason.as_deref())
                .await?;
            println!("approved {spec} in {}: it is served from now on", registry.name);
        }
        QuarantineCommand::Reject { registry, spec, reason } => {
            let registry = find_registry(&services, &registry).await?;
            services
                .review(&Actor::cli(), &registry, &spec, false, reason.as_deref())
                .await?;
            println!("rejected {spec} in {}: it is blocked", registry.name);
        }
    }
    Ok(())
}

pub(super) async fn advisory_command(config: Config, cmd: AdvisoryCommand) -> anyhow::Result<()> {
    let (_, services) = open(&config).await?;
    match cmd {
        AdvisoryCommand::Import { path, replace } => {
            let source = path.display().to_string();
            let read = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || import::import_path(&path)).await?
            }
            .with_context(|| format!("nothing was imported; the advisory database is unchanged ({source})"))?;
            for skipped in read.skipped.iter().take(20) {
                eprintln!("warning: skipped {} ({}): {}", skipped.id, skipped.source, skipped.why);
            }
            if read.skipped.len() > 20 {
                eprintln!("warning: and {} more skipped records", read.skipped.len() - 20);
            }
            let summary = services
                .import_advisories(
                    &Actor::cli(),
                    &read.advisories,
                    read.skipped.len() as u64,
                    &source,
                    replace,
                )
                .await?;
            println!(
                "imported {} npm advisories from {source}: {} added, {} updated, {} unchanged, {} removed; \
                 {} records skipped, {} ignored (withdrawn or not npm)",
                read.advisories.len(),
                summary.added,
                summary.updated,
                summary.unchanged,
                summary.removed,
                read.skipped.len(),
                read.ignored
            );
        }
        AdvisoryCommand::Stats => {
            let stats = services.advisory_stats().await?;
            println!("advisories\t{}", stats.advisories);
            println!("packages\t{}", stats.packages);
            println!(
                "newest modified\t{}",
                stats.newest_modified.map_or_else(|| "-".to_owned(), iso_time)
            );
            match stats.last_import {
                Some(last) => println!(
                    "last import\t{} from {}{}: {} added, {} updated, {} removed, {} skipped",
                    iso_time(last.imported_at),
                    last.source,
                    if last.replaced { " (--replace)" } else { "" },
                    last.summary.added,
                    last.summary.updated,
                    last.summary.removed,
                    last.summary.skipped
                ),
                None => println!("last import\tnever: gatehouse advisories import PATH"),
            }
        }
    }
    Ok(())
}

fn print_decisions(rows: &[gatehouse_store::DecisionRow], json: bool) -> anyhow::Result<()> {
    if json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "package": r.package, "version": r.version, "decision": r.verdict, "would": r.would,
                    "rule": r.rule, "reason": r.reason, "decided_at": iso_time(r.decided_at),
                    "findings": serde_json::from_str::<serde_json::Value>(&r.findings).unwrap_or_default(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!("PACKAGE\tVERSION\tDECISION\tWOULD\tRULE\tDECIDED\tREASON");
    for r in rows {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.package,
            r.version,
            r.verdict,
            r.would,
            r.rule.as_deref().unwrap_or("-"),
            iso_time(r.decided_at),
            r.reason
        );
    }
    Ok(())
}

/// `policy check`: its own exit statuses, also with `--json`.
async fn check(
    config: Config,
    registry: &str,
    lockfile: &std::path::Path,
    policy: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<()> {
    match run_check(config, registry, lockfile, policy).await {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
            }
            if report.ok { Ok(()) } else { Err(Exit(1).into()) }
        }
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
            }
            eprintln!("error: {e:#}");
            Err(Exit(2).into())
        }
    }
}

async fn run_check(
    config: Config,
    registry: &str,
    lockfile: &std::path::Path,
    policy: Option<&std::path::Path>,
) -> anyhow::Result<CheckReport> {
    let text = tokio::fs::read_to_string(lockfile)
        .await
        .with_context(|| format!("cannot read {}", lockfile.display()))?;
    let locked = gatehouse_npm::lockfile::parse(&text).with_context(|| lockfile.display().to_string())?;
    let policy = match policy {
        Some(path) => {
            let text = tokio::fs::read_to_string(path)
                .await
                .with_context(|| format!("cannot read {}", path.display()))?;
            Some(std::sync::Arc::new(
                Policy::parse(&text).with_context(|| path.display().to_string())?,
            ))
        }
        None => None,
    };
    let app = command_app(config).await?;
    let registry = find_registry(&app.services, registry).await?;
    Ok(lockfile_check::check(&app.packuments, &registry, &locked, policy).await?)
}

fn print_report(report: &CheckReport) {
    for finding in &report.held_back {
        println!(
            "{}\t{}@{}\t{}",
            finding.decision, finding.name, finding.version, finding.reason
        );
    }
    for finding in &report.warnings {
        println!("warn\t{}@{}\t{}", finding.name, finding.version, finding.reason);
    }
    println!(
        "{} of {} package versions ({}) would not be served by {}{}",
        report.held_back.len(),
        report.checked,
        report.lockfile,
        report.registry,
        if report.warnings.is_empty() {
            String::new()
        } else {
            format!("; {} with a warning", report.warnings.len())
        }
    );
}
