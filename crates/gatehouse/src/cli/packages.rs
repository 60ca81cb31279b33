//! `gatehouse package internal` and `gatehouse push`.

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
}

pub(super) async fn push(config: Config, registry: &str, spec: &str, to: &str) -> anyhow::Result<()> {
    let (name, version) = match spec.rfind('@') {
        Some(at) if at > 0 => (&spec[..at], &spec[at + 1..]),
        _ => bail!("{spec:?} is not name@version"),
    };
    let name = PackageName::parse(name)?;
    let version = Version::parse(version)?;
    require_existing_store(&config)?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| PublicUrl::from_addr(config.listen));
    let app = App::start(config, public_url, None).await?;
    let from = find_registry(&app.services, registry).await?;
    let summary = app.promotion.push(&from, &name, &version, to, "cli").await?;
    println!("{summary}");
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
    }
    Ok(())
}
