//! `gatehouse package internal|claim|unclaim|claims` and `gatehouse push`.

use super::*;

#[derive(Subcommand, Debug)]
pub(super) enum PackageCommand {
    /// Flag a package internal (never resolved from untrusted upstreams) or not.
    Internal {
        registry: String,
        name: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Claim a name (or a whole scope, '@acme/*') for a registry, so that it may be
    /// published there even though an upstream serves it. Also for names the
    /// registry doesn't hold yet.
    Claim { registry: String, pattern: String },
    /// Remove a claim.
    Unclaim { registry: String, pattern: String },
    /// List a registry's claims.
    Claims { registry: String },
    /// Remove a package (every version) or one version, as an administrator. Like npm
    /// unpublish: the version numbers stay taken and are never served again.
    Delete {
        registry: String,
        /// NAME or NAME@VERSION
        spec: String,
        /// Required: what is removed is gone for every client.
        #[arg(long)]
        yes: bool,
    },
    /// Drop the stored upstream copies of a package's document, so the registry asks
    /// its upstreams again on the next request.
    Purge { registry: String, name: String },
    /// List the packages a registry holds: latest version, live versions, published
    /// here or pulled, internal or not.
    List { registry: String },
}

/// The application for a command that pulls or pushes, on the stores that exist.
pub(super) async fn command_app(config: Config) -> anyhow::Result<std::sync::Arc<App>> {
    require_existing_store(&config)?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| PublicUrl::from_addr(config.listen));
    Ok(App::for_command(config, public_url).await?)
}

pub(super) async fn push(config: Config, registry: &str, spec: &str, to: &str) -> anyhow::Result<()> {
    let (name, version) = match spec.rfind('@') {
        Some(at) if at > 0 => (&spec[..at], &spec[at + 1..]),
        _ => bail!("{spec:?} is not name@version"),
    };
    let name = PackageName::parse(name)?;
    let version = Version::parse(version)?;
    let app = command_app(config).await?;
    let from = find_registry(&app.services, registry).await?;
    let summary = app.promotion.push(&from, &name, &version, to, &Actor::cli()).await?;
    println!("{summary}");
    Ok(())
}

pub(super) async fn warm(
    config: Config,
    registry: &str,
    lockfile: &std::path::Path,
    jobs: usize,
) -> anyhow::Result<()> {
    use futures_util::StreamExt as _;
    use gatehouse_server::upstream::pull::PullError;

    let text = tokio::fs::read_to_string(lockfile)
        .await
        .with_context(|| format!("cannot read {}", lockfile.display()))?;
    let locked = gatehouse_npm::lockfile::parse(&text).with_context(|| lockfile.display().to_string())?;
    let app = command_app(config).await?;
    let registry = find_registry(&app.services, registry).await?;
    let total = locked.packages.len();
    eprintln!(
        "warm: {total} package versions from {} ({}) into {}",
        lockfile.display(),
        locked.kind.as_str(),
        registry.name
    );
    enum Outcome {
        Held,
        Pulled,
        Refused(String),
        Failed(String),
    }
    let outcomes = futures_util::stream::iter(locked.packages.iter())
        .map(|pin| {
            let (app, registry) = (&app, &registry);
            async move {
                let held = app
                    .packuments
                    .get(registry, &pin.name)
                    .await
                    .is_ok_and(|p| p.tarballs.contains_key(pin.version.as_str()));
                let outcome = if held {
                    Outcome::Held
                } else {
                    match app.pulls.ensure_local(registry, &pin.name, pin.version.as_str()).await {
                        Ok(_) => Outcome::Pulled,
                        Err(e @ (PullError::Refused { .. } | PullError::Policy(_))) => Outcome::Refused(e.to_string()),
                        Err(PullError::NotFound) => Outcome::Failed("no upstream of the registry has it".into()),
                        Err(e) => Outcome::Failed(e.to_string()),
                    }
                };
                (pin, outcome)
            }
        })
        .buffer_unordered(jobs.max(1));
    futures_util::pin_mut!(outcomes);
    let (mut held, mut pulled, mut refused, mut failed, mut done) = (0, 0, 0, 0, 0usize);
    while let Some((pin, outcome)) = outcomes.next().await {
        done += 1;
        match outcome {
            Outcome::Held => held += 1,
            Outcome::Pulled => pulled += 1,
            Outcome::Refused(why) => {
                refused += 1;
                println!("refused\t{}@{}\t{why}", pin.name, pin.version);
            }
            Outcome::Failed(why) => {
                failed += 1;
                println!("failed\t{}@{}\t{why}", pin.name, pin.version);
            }
        }
        if done.is_multiple_of(100) && done < total {
            eprintln!("warm: {done}/{total}");
        }
    }
    println!(
        "{pulled} pulled, {held} already held, {refused} refused, {failed} failed, of {total}; \
         {} entries are not registry packages",
        locked.skipped
    );
    if refused + failed > 0 {
        bail!(
            "{} of {total} package versions are not in {}",
            refused + failed,
            registry.name
        );
    }
    Ok(())
}

pub(super) async fn package_command(config: Config, cmd: PackageCommand) -> anyhow::Result<()> {
    let (_, services) = open(&config).await?;
    match cmd {
        PackageCommand::Internal { registry, name, state } => {
            let registry = find_registry(&services, &registry).await?;
            let name = PackageName::parse(&name)?;
            let internal = state == "on";
            services.set_internal(&Actor::cli(), &registry, &name, internal).await?;
            println!(
                "{name} in {} is now {}",
                registry.name,
                if internal { "internal" } else { "not internal" }
            );
        }
        PackageCommand::Claim { registry, pattern } => {
            let registry = find_registry(&services, &registry).await?;
            services.claim(&Actor::cli(), &registry, &pattern).await?;
            println!("{pattern} is claimed for {}: it may be published there", registry.name);
        }
        PackageCommand::Unclaim { registry, pattern } => {
            let registry = find_registry(&services, &registry).await?;
            services.unclaim(&Actor::cli(), &registry, &pattern).await?;
            println!("{pattern} is no longer claimed for {}", registry.name);
        }
        PackageCommand::Delete { registry, spec, yes } => {
            let registry = find_registry(&services, &registry).await?;
            let (name, version) = match spec.rfind('@') {
                Some(at) if at > 0 => (&spec[..at], Some(&spec[at + 1..])),
                _ => (spec.as_str(), None),
            };
            let name = PackageName::parse(name)?;
            let record = services.package_record(&registry, &name).await?;
            if !yes {
                bail!("deleting {spec} removes it for every client; run again with --yes");
            }
            match version {
                Some(version) => {
                    services
                        .delete_version(&Actor::cli(), &registry, &record, version)
                        .await?
                }
                None => {
                    services
                        .unpublish_package(&Actor::cli(), &registry, &record, None)
                        .await?
                }
            }
            println!("deleted {spec} from {}", registry.name);
        }
        PackageCommand::Purge { registry, name } => {
            let registry = find_registry(&services, &registry).await?;
            let name = PackageName::parse(&name)?;
            let purged = services.purge_upstream_copies(&Actor::cli(), &registry, &name).await?;
            println!("dropped {purged} stored upstream copies of {name} in {}", registry.name);
        }
        PackageCommand::List { registry } => {
            let registry = find_registry(&services, &registry).await?;
            println!("NAME\tLATEST\tVERSIONS\tORIGIN\tINTERNAL");
            for package in services.packages(&registry).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    package.name,
                    package.latest.as_deref().unwrap_or("-"),
                    package.versions,
                    package.origin.as_str(),
                    if package.internal { "internal" } else { "-" }
                );
            }
        }
        PackageCommand::Claims { registry } => {
            let registry = find_registry(&services, &registry).await?;
            for claim in services.claims(&registry).await? {
                println!(
                    "{}\t{}\t{}",
                    claim.pattern,
                    claim.claimed_by.unwrap_or_else(|| "-".into()),
                    iso_time(claim.claimed_at)
                );
            }
        }
    }
    Ok(())
}
