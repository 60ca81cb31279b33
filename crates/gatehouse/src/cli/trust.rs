//! `gatehouse trust add|list|remove`: which CI jobs may publish a package through
//! trusted publishing (OIDC), as `npm trust` manages it over HTTP.

use gatehouse_npm::trust::TrustRule;
use serde_json::json;

use super::*;

#[derive(Subcommand, Debug)]
pub(super) enum TrustCommand {
    /// Let a CI job publish PACKAGE (also a name not published yet): a GitHub Actions
    /// workflow, a GitLab CI config, or any job of a configured generic issuer.
    Add {
        registry: String,
        package: String,
        /// GitHub Actions: the repository, OWNER/REPO.
        #[arg(long, value_name = "OWNER/REPO", conflicts_with_all = ["gitlab", "issuer"])]
        github: Option<String>,
        /// GitLab CI: the project path, GROUP/PROJECT.
        #[arg(long, value_name = "GROUP/PROJECT", conflicts_with = "issuer")]
        gitlab: Option<String>,
        /// A generic issuer, by its name under [oidc.issuers]; with --claim.
        #[arg(long, value_name = "NAME")]
        issuer: Option<String>,
        /// The workflow file (GitHub, e.g. release.yml) or CI config file (GitLab).
        #[arg(long)]
        file: Option<String>,
        /// Only jobs of this deployment environment.
        #[arg(long)]
        environment: Option<String>,
        /// A claim a generic issuer's token must carry, KEY=VALUE (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        claim: Vec<String>,
        /// The user whose token the exchange mints: the package's first maintainer
        /// (default), required for a name that has none yet, who then becomes it.
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
    },
    /// List a package's trust configurations.
    List { registry: String, package: String },
    /// Remove one (its ID from `trust list`): its CI job can no longer exchange tokens.
    Remove {
        registry: String,
        package: String,
        id: String,
    },
}

pub(super) async fn trust_command(config: Config, cmd: TrustCommand) -> anyhow::Result<()> {
    let (meta, services) = open(&config).await?;
    match cmd {
        TrustCommand::Add {
            registry,
            package,
            github,
            gitlab,
            issuer,
            file,
            environment,
            claim,
            owner,
        } => {
            let registry = find_registry(&services, &registry).await?;
            let name = PackageName::parse(&package)?;
            let body = match (github, gitlab, issuer) {
                (Some(repository), None, None) => json!({"type": "github", "claims": {
                    "repository": repository, "workflow_ref": {"file": file}, "environment": environment}}),
                (None, Some(project), None) => json!({"type": "gitlab", "claims": {
                    "project_path": project, "ci_config_ref_uri": {"file": file}, "environment": environment}}),
                (None, None, Some(issuer)) => {
                    let mut claims = serde_json::Map::new();
                    for pair in &claim {
                        let (key, value) = pair
                            .split_once('=')
                            .with_context(|| format!("--claim {pair:?}: expected KEY=VALUE"))?;
                        claims.insert(key.to_owned(), json!(value));
                    }
                    json!({"type": "generic", "issuer": issuer, "claims": claims})
                }
                _ => bail!("say which CI may publish: --github OWNER/REPO, --gitlab GROUP/PROJECT or --issuer NAME"),
            };
            if !config.oidc.issuers.values().any(|i| {
                let kind = body["type"].as_str().unwrap_or_default();
                i.kind.as_str() == kind
            }) {
                eprintln!(
                    "warning: no [oidc.issuers] entry of kind {} is configured, so no token can be exchanged yet",
                    body["type"]
                );
            }
            let rule = TrustRule::parse_npm(&body)?;
            let record = meta.package(registry.id, &name).await?;
            let owner = match (owner, record.as_ref().and_then(|r| r.maintainers.first())) {
                (Some(owner), _) => owner,
                (None, Some(first)) => first.name.clone(),
                (None, None) => bail!(
                    "{name} has no maintainer in {} yet: name the user who will maintain it with --owner USER",
                    registry.name
                ),
            };
            let creator = services.user(&owner).await?;
            let added = services
                .add_trust(&Actor::cli(), &registry, &name, &creator, std::slice::from_ref(&rule))
                .await?;
            for config in added {
                println!("{}\t{}", config.row.id, describe(&config.rule));
            }
        }
        TrustCommand::List { registry, package } => {
            let registry = find_registry(&services, &registry).await?;
            let name = PackageName::parse(&package)?;
            println!("ID\tOWNER\tTRUSTS");
            for config in services.trust_configs(&registry, &name).await? {
                println!(
                    "{}\t{}\t{}",
                    config.row.id,
                    config.row.created_by,
                    describe(&config.rule)
                );
            }
        }
        TrustCommand::Remove { registry, package, id } => {
            let registry = find_registry(&services, &registry).await?;
            let name = PackageName::parse(&package)?;
            services.remove_trust(&Actor::cli(), &registry, &name, &id).await?;
            println!("removed trust configuration {id} of {name}");
        }
    }
    Ok(())
}

/// One line: which CI, which file, which environment.
fn describe(rule: &TrustRule) -> String {
    let mut parts = vec![rule.kind.as_str().to_owned()];
    parts.extend(rule.project.clone());
    parts.extend(rule.file.as_ref().map(|file| format!("file={file}")));
    parts.extend(rule.environment.as_ref().map(|env| format!("environment={env}")));
    parts.extend(rule.issuer.as_ref().map(|issuer| format!("issuer={issuer}")));
    parts.extend(rule.claims.iter().map(|(key, value)| format!("{key}={value}")));
    parts.join(" ")
}
