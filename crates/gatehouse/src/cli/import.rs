//! `gatehouse import`: moving in from another registry.

use std::path::PathBuf;

use clap::Subcommand;

use gatehouse_server::config::Config;
use gatehouse_server::import::{Importer, Report, VerdaccioImport};
use gatehouse_server::services::Actor;
use gatehouse_store::registry::RegistryName;

use super::packages::command_app;
use super::policy::Exit;

#[derive(Subcommand, Debug)]
pub(super) enum ImportCommand {
    /// Import a Verdaccio storage folder: its packages with their versions, tarballs,
    /// dist-tags, deprecations and times, and (with --htpasswd) its users. Every version
    /// goes through this registry's checks and policy; a re-run skips what is here.
    Verdaccio {
        /// The folder Verdaccio's `storage:` setting names.
        storage: PathBuf,
        /// The registry to import into (created, private, when missing).
        #[arg(long)]
        registry: String,
        /// Verdaccio's htpasswd file: its users are created here with their passwords.
        #[arg(long, value_name = "FILE")]
        htpasswd: Option<PathBuf>,
        /// Maintainer of the packages whose documents record none (Verdaccio 6 records none).
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
        /// Also import Verdaccio's cached copies of public packages, as pulled versions.
        #[arg(long)]
        include_cache: bool,
    },
}

pub(super) async fn import_command(config: Config, cmd: ImportCommand) -> anyhow::Result<()> {
    let ImportCommand::Verdaccio {
        storage,
        registry,
        htpasswd,
        owner,
        include_cache,
    } = cmd;
    let max_tarball_bytes = config.limits.max_body_bytes;
    let app = command_app(config).await?;
    let actor = Actor::cli();
    let registry = RegistryName::parse(&registry)?;
    let options = VerdaccioImport {
        storage: &storage,
        htpasswd: htpasswd.as_deref(),
        owner: owner.as_deref(),
        include_cache,
    };
    let importer = Importer {
        admission: &app.admission,
        services: &app.services,
        meta: &app.meta,
        max_tarball_bytes,
    };
    eprintln!("import: {} into registry {registry}", storage.display());
    let report = importer
        .verdaccio(&actor, &registry, &options, |done, total| {
            if done.is_multiple_of(25) || done == total {
                eprintln!("import: {done}/{total} packages");
            }
        })
        .await?;
    if report.created_registry {
        eprintln!("import: created registry {registry} (private)");
    }
    print_report(&report, &registry);
    if !report.failed.is_empty() {
        eprintln!(
            "import: {} could not be imported (listed above); fix them and run the import again",
            report.failed.len()
        );
        return Err(Exit(1).into());
    }
    Ok(())
}

fn print_report(report: &Report, registry: &RegistryName) {
    for (spec, why) in &report.refused {
        println!("refused\t{spec}\t{why}");
    }
    for (spec, why) in &report.held {
        println!("held\t{spec}\t{why}");
    }
    for (spec, why) in &report.failed {
        println!("failed\t{spec}\t{why}");
    }
    for (user, why) in &report.users_to_reset {
        println!("reset\t{user}\t{why}");
    }
    for name in &report.without_maintainer {
        println!(
            "no-owner\t{name}\tno maintainer recorded, so only admins of {registry} can change it: \
             run the import again with --owner USER, or `npm owner add USER {name}`"
        );
    }
    println!(
        "{} packages: {} versions imported ({} held for review), {} already here, {} refused by policy, {} failed; \
         {} dist-tags set",
        report.packages,
        report.imported,
        report.held.len(),
        report.already_here,
        report.refused.len(),
        report.failed.len(),
        report.tags_set,
    );
    if report.cached_skipped > 0 {
        println!(
            "{} cached packages of upstreams skipped, {} cached versions in all (--include-cache imports them)",
            report.cached_packages_skipped, report.cached_skipped
        );
    }
    if report.cached_without_tarball > 0 {
        println!(
            "{} cached versions had no tarball in the storage folder",
            report.cached_without_tarball
        );
    }
    if report.users_created + report.users_present + report.users_to_reset.len() > 0 {
        println!(
            "users: {} created ({} re-hashed with argon2id at their first login), {} already here, {} must reset",
            report.users_created,
            report.users_rehashed_at_login,
            report.users_present,
            report.users_to_reset.len()
        );
    }
}
