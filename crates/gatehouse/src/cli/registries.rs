//! `gatehouse registry …`: registries, their upstreams and roles.

use gatehouse_server::services::UpstreamRequest;

use super::*;

#[derive(Subcommand, Debug)]
pub(super) enum RegistryCommand {
    /// Create a registry, served at /r/NAME/.
    Create {
        name: String,
        /// Allow reading without credentials.
        #[arg(long)]
        public: bool,
        /// Upstreams in the order they are consulted (repeatable): npmjs, a URL, or registry:OTHER.
        #[arg(long = "upstream", value_name = "UPSTREAM")]
        upstreams: Vec<String>,
    },
    /// List registries.
    List,
    /// Delete a registry with its packages (refused while another registry pulls from it).
    Delete {
        name: String,
        /// Required: the registry and its packages are gone for good.
        #[arg(long)]
        yes: bool,
    },
    /// Rename a registry: it is served at /r/NEW/ from then on (registries pulling from
    /// it and tokens limited to it follow; clients must be pointed at the new URL).
    Rename { name: String, new_name: String },
    /// Copy a registry with its settings, upstreams, grants, claims and packages.
    Clone { name: String, new_name: String },
    /// Make a registry readable without credentials, or not.
    Visibility {
        name: String,
        #[arg(value_parser = ["public", "private"])]
        visibility: String,
    },
    /// Manage a registry's upstreams.
    #[command(subcommand)]
    Upstream(UpstreamCommand),
    /// Give a user a role on a registry: read, publish or admin.
    Grant { name: String, user: String, role: String },
    /// Remove a user's role on a registry (they fall back to the default role).
    Revoke { name: String, user: String },
    /// Set what every logged-in user may do on a registry: none, read or publish.
    DefaultRole { name: String, role: String },
}

#[derive(Subcommand, Debug)]
pub(super) enum UpstreamCommand {
    /// Append an upstream: npmjs, an npm registry URL, or registry:OTHER.
    Add {
        registry: String,
        upstream: String,
        /// Bearer token for a remote registry (also used to push to it).
        #[arg(long, conflicts_with = "basic")]
        token: Option<String>,
        /// user:password for a remote registry.
        #[arg(long)]
        basic: Option<String>,
        /// Trust this upstream with packages flagged internal (e.g. your company's other registry).
        #[arg(long)]
        internal: bool,
    },
    /// Remove an upstream.
    Remove { registry: String, upstream: String },
    /// List upstreams in the order they are consulted.
    List { registry: String },
}

pub(super) async fn registry(config: Config, cmd: RegistryCommand) -> anyhow::Result<()> {
    let (meta, services) = open(&config).await?;
    let actor = Actor::cli();
    match cmd {
        RegistryCommand::Create {
            name,
            public,
            upstreams,
        } => {
            let name = RegistryName::parse(&name)?;
            let upstreams = upstreams
                .iter()
                .map(|raw| UpstreamSpec::parse(raw).map(UpstreamRequest::plain))
                .collect::<Result<Vec<_>, _>>()?;
            services.create_registry(&actor, &name, public, &upstreams).await?;
            println!("created registry {name} (served at /r/{name}/)");
        }
        RegistryCommand::List => {
            for registry in meta.registries().await? {
                let access = if registry.public_read { "public" } else { "private" };
                println!("{}\t{access}", registry.name);
            }
        }
        RegistryCommand::Delete { name, yes } => {
            let registry = find_registry(&services, &name).await?;
            if !yes {
                bail!("deleting {name} removes its packages for good; run again with --yes");
            }
            services.delete_registry(&actor, &registry).await?;
            println!("deleted registry {name}");
        }
        RegistryCommand::Rename { name, new_name } => {
            let registry = find_registry(&services, &name).await?;
            let new = RegistryName::parse(&new_name)?;
            services.rename_registry(&actor, &registry, &new).await?;
            println!("renamed registry {name} to {new} (served at /r/{new}/)");
        }
        RegistryCommand::Clone { name, new_name } => {
            let registry = find_registry(&services, &name).await?;
            let new = RegistryName::parse(&new_name)?;
            services.clone_registry(&actor, &registry, &new).await?;
            println!("cloned registry {name} to {new} (served at /r/{new}/)");
        }
        RegistryCommand::Visibility { name, visibility } => {
            let registry = find_registry(&services, &name).await?;
            services
                .set_registry_public(&actor, &registry, visibility == "public")
                .await?;
            println!("{name} is now {visibility}");
        }
        RegistryCommand::Upstream(cmd) => upstream_command(&meta, &services, cmd).await?,
        RegistryCommand::Grant { name, user, role } => {
            let registry = find_registry(&services, &name).await?;
            let role = Role::parse(&role)?;
            let user = services.user(&user).await?;
            services.set_member_role(&actor, &registry, &user, Some(role)).await?;
            println!("{} may now {role} on {}", user.name, registry.name);
        }
        RegistryCommand::Revoke { name, user } => {
            let registry = find_registry(&services, &name).await?;
            let user = services.user(&user).await?;
            services.set_member_role(&actor, &registry, &user, None).await?;
            println!("{} has no explicit role on {} any more", user.name, registry.name);
        }
        RegistryCommand::DefaultRole { name, role } => {
            let registry = find_registry(&services, &name).await?;
            let role = match role.as_str() {
                "none" => None,
                "read" | "publish" => Some(Role::parse(&role)?),
                other => bail!("invalid default role {other:?}: use none, read or publish"),
            };
            services.set_default_role(&actor, &registry, role).await?;
            let shown = role.map_or("none", Role::as_str);
            println!("logged-in users now get {shown} on {}", registry.name);
        }
    }
    Ok(())
}

async fn upstream_command(meta: &Meta, services: &Services, cmd: UpstreamCommand) -> anyhow::Result<()> {
    let actor = Actor::cli();
    match cmd {
        UpstreamCommand::Add {
            registry,
            upstream,
            token,
            basic,
            internal,
        } => {
            let registry = find_registry(services, &registry).await?;
            let request = UpstreamRequest {
                spec: UpstreamSpec::parse(&upstream)?,
                token,
                basic_auth: basic,
                internal,
            };
            services.add_upstream(&actor, &registry, &request).await?;
            println!("{} now also pulls from {}", registry.name, request.spec);
        }
        UpstreamCommand::Remove { registry, upstream } => {
            let registry = find_registry(services, &registry).await?;
            let spec = UpstreamSpec::parse(&upstream)?;
            services.remove_upstream(&actor, &registry, &spec).await?;
            println!("{} no longer pulls from {spec}", registry.name);
        }
        UpstreamCommand::List { registry } => {
            let registry = find_registry(services, &registry).await?;
            for row in meta.upstreams(registry.id).await? {
                let auth = match (&row.token, &row.basic_auth) {
                    (Some(_), _) => "token",
                    (None, Some(_)) => "basic",
                    (None, None) => "none",
                };
                let trust = if row.internal { "internal" } else { "public" };
                println!("{}\tauth:{auth}\t{trust}", row.spec);
            }
        }
    }
    Ok(())
}

/// `gatehouse setup REGISTRY [--client C] [--token T] [--scope S]`: the snippets of
/// `gatehouse_npm::setup`, each under a comment that says which file it is.
pub(super) async fn setup(
    config: Config,
    name: &str,
    client: Option<&str>,
    token: Option<&str>,
    scope: Option<&str>,
) -> anyhow::Result<()> {
    use gatehouse_npm::setup::{self, Client, SetupContext};
    let (meta, services) = open(&config).await?;
    let registry = find_registry(&services, name).await?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| gatehouse_server::config::PublicUrl::from_addr(config.listen));
    let registry_url = format!("{}/r/{}/", public_url.as_str(), registry.name);
    // The Basic (`_auth`) forms need the token's owner.
    let user = match token {
        Some(secret) => meta
            .token_by_secret_hash(&gatehouse_server::auth::token::hash_secret(secret))
            .await?
            .map(|t| t.user.name),
        None => None,
    };
    let context = SetupContext {
        registry_url: &registry_url,
        registry: registry.name.as_str(),
        scope,
        token,
        user: user.as_deref(),
    };
    let clients: Vec<Client> = match client {
        Some(slug) => vec![Client::from_slug(slug).with_context(|| format!("unknown client {slug:?}"))?],
        None => Client::ALL.to_vec(),
    };
    println!("# Registry URL: {registry_url}");
    for client in clients {
        println!("\n# ===== {} =====", client.heading());
        for snippet in setup::snippets(client, &context) {
            println!(
                "\n# --- {} ---\n# {}\n{}",
                snippet.file,
                snippet.note,
                snippet.text.trim_end()
            );
        }
    }
    Ok(())
}
