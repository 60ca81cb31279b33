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
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| PublicUrl::from_addr(config.listen));
    let app = App::start(config, public_url, None).await?;
    let from = find_registry(&app.meta, registry).await?;
    let summary = crate::upstream::push::push(&app, &from, &name, &version, to, "cli").await?;
    println!("{summary}");
    Ok(())
}

pub(super) async fn package_command(config: Config, cmd: PackageCommand) -> anyhow::Result<()> {
    let meta = app::open_meta(&config).await?;
    match cmd {
        PackageCommand::Internal { registry, name, state } => {
            let registry = find_registry(&meta, &registry).await?;
            let name = PackageName::parse(&name)?;
            let record = meta
                .package(registry.id, &name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("{} holds no package {name}", registry.name))?;
            let internal = state == "on";
            meta.set_internal(record.id, internal).await?;
            audit_cli(
                &meta,
                "package.internal",
                Some(&registry),
                format!("{name} internal={internal}"),
            )
            .await?;
            println!(
                "{name} in {} is now {}",
                registry.name,
                if internal { "internal" } else { "not internal" }
            );
        }
    }
    Ok(())
}
