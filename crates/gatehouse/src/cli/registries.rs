//! `gatehouse registry …`: registries, their upstreams and roles.

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
    let meta = app::open_meta(&config).await?;
    match cmd {
        RegistryCommand::Create {
            name,
            public,
            upstreams,
        } => {
            let name = RegistryName::parse(&name)?;
            let specs = upstreams
                .iter()
                .map(|raw| UpstreamSpec::parse(raw).map(|spec| spec.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            let registry = match meta.create_registry(&name, public).await {
                Ok(registry) => registry,
                Err(StoreError::Conflict(_)) => bail!("a registry named \"{name}\" already exists"),
                Err(e) => return Err(e.into()),
            };
            for spec in specs {
                meta.add_upstream(
                    registry.id,
                    &NewUpstream {
                        spec,
                        ..NewUpstream::default()
                    },
                )
                .await?;
            }
            meta.append_audit(&AuditEntry {
                actor: Some("cli".into()),
                action: "registry.create",
                registry: Some(name.to_string()),
                ..AuditEntry::default()
            })
            .await?;
            println!("created registry {name} (served at /r/{name}/)");
        }
        RegistryCommand::List => {
            for registry in meta.registries().await? {
                let access = if registry.public_read { "public" } else { "private" };
                println!("{}\t{access}", registry.name);
            }
        }
        RegistryCommand::Upstream(cmd) => upstream_command(&meta, cmd).await?,
        RegistryCommand::Grant { name, user, role } => {
            let registry = find_registry(&meta, &name).await?;
            let role = Role::parse(&role)?;
            let user = find_user(&meta, &user).await?;
            meta.set_member_role(registry.id, user.id, Some(role)).await?;
            audit_cli(
                &meta,
                "registry.grant",
                Some(&registry),
                format!("{} {role}", user.name),
            )
            .await?;
            println!("{} may now {role} on {}", user.name, registry.name);
        }
        RegistryCommand::Revoke { name, user } => {
            let registry = find_registry(&meta, &name).await?;
            let user = find_user(&meta, &user).await?;
            meta.set_member_role(registry.id, user.id, None).await?;
            audit_cli(&meta, "registry.revoke", Some(&registry), user.name.clone()).await?;
            println!("{} has no explicit role on {} any more", user.name, registry.name);
        }
        RegistryCommand::DefaultRole { name, role } => {
            let registry = find_registry(&meta, &name).await?;
            let role = match role.as_str() {
                "none" => None,
                "read" | "publish" => Some(Role::parse(&role)?),
                other => bail!("invalid default role {other:?}: use none, read or publish"),
            };
            meta.set_default_role(registry.id, role).await?;
            let shown = role.map_or("none", Role::as_str);
            audit_cli(&meta, "registry.default_role", Some(&registry), shown.to_owned()).await?;
            println!("logged-in users now get {shown} on {}", registry.name);
        }
    }
    Ok(())
}

async fn upstream_command(meta: &Meta, cmd: UpstreamCommand) -> anyhow::Result<()> {
    match cmd {
        UpstreamCommand::Add {
            registry,
            upstream,
            token,
            basic,
            internal,
        } => {
            let registry = find_registry(meta, &registry).await?;
            let spec = UpstreamSpec::parse(&upstream)?;
            if let UpstreamSpec::Registry(other) = &spec {
                if other == &registry.name {
                    bail!("a registry cannot be its own upstream");
                }
                find_registry(meta, other.as_str()).await?;
            }
            if basic.as_deref().is_some_and(|b| !b.contains(':')) {
                bail!("--basic takes user:password");
            }
            let added = meta
                .add_upstream(
                    registry.id,
                    &NewUpstream {
                        spec: spec.to_string(),
                        token,
                        basic_auth: basic,
                        internal,
                    },
                )
                .await;
            match added {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => bail!("{} already has upstream {spec}", registry.name),
                Err(e) => return Err(e.into()),
            }
            audit_cli(meta, "registry.upstream_add", Some(&registry), spec.to_string()).await?;
            println!("{} now also pulls from {spec}", registry.name);
        }
        UpstreamCommand::Remove { registry, upstream } => {
            let registry = find_registry(meta, &registry).await?;
            let spec = UpstreamSpec::parse(&upstream)?.to_string();
            if !meta.remove_upstream(registry.id, &spec).await? {
                bail!("{} has no upstream {spec}", registry.name);
            }
            audit_cli(meta, "registry.upstream_remove", Some(&registry), spec.clone()).await?;
            println!("{} no longer pulls from {spec}", registry.name);
        }
        UpstreamCommand::List { registry } => {
            let registry = find_registry(meta, &registry).await?;
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
