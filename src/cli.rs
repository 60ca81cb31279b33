//! The `gatehouse` command line. Admin commands work directly on the data dir, so
//! they also work while the server runs (SQLite serialises the writers).

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use crate::app::{self, App};
use crate::auth::cidr::Cidr;
use crate::auth::token::{self, TokenSpec};
use crate::auth::{password, valid_user_name};
use crate::config::{Config, Overrides, PublicUrl};
use crate::npm::name::PackageName;
use crate::npm::packument::iso_time;
use crate::npm::version::Version;
use crate::registry::{RegistryName, Role};
use crate::store::{AuditEntry, Meta, NewUpstream, Registry, StoreError, User, now_millis};
use crate::upstream::spec::UpstreamSpec;

#[derive(Parser, Debug)]
#[command(
    name = "gatehouse",
    version,
    about = "A self-hosted private npm registry and package firewall"
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
struct GlobalArgs {
    /// TOML configuration file.
    #[arg(long, global = true, env = "GATEHOUSE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the database and tarballs live [default: ./gatehouse-data].
    #[arg(long, global = true, env = "GATEHOUSE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the registry server.
    Serve(ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage registries.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Manage API tokens (for CI jobs, Unity projects, people).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage packages.
    #[command(subcommand)]
    Package(PackageCommand),
    /// Copy a version to one of the registry's upstreams: another registry here
    /// (promotion, same bytes) or a remote npm registry (publish with its token).
    Push {
        registry: String,
        /// name@version, e.g. @acme/lib@1.2.3
        spec: String,
        /// The upstream, as listed by `registry upstream list` (registry:prod, npmjs, a URL).
        #[arg(long)]
        to: String,
    },
    /// Show the most recent audit log entries, newest first.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Subcommand, Debug)]
enum UpstreamCommand {
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

#[derive(Subcommand, Debug)]
enum PackageCommand {
    /// Flag a package internal (never resolved from untrusted upstreams) or not.
    Internal {
        registry: String,
        name: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create a token; its value is printed once and never stored.
    Create {
        /// Owner of the token; it acts with this user's rights, never more.
        #[arg(long)]
        user: String,
        /// The token may read but never publish, tag, deprecate or unpublish.
        #[arg(long)]
        read_only: bool,
        /// Only accept the token from these address ranges (repeatable), e.g. 10.0.0.0/8.
        #[arg(long = "cidr", value_name = "RANGE")]
        cidrs: Vec<String>,
        /// Only accept the token on these registries (repeatable); all when omitted.
        #[arg(long = "registry", value_name = "NAME")]
        registries: Vec<String>,
        /// Only accept the token for packages matching these patterns (repeatable), e.g. '@acme/*'.
        #[arg(long = "package", value_name = "PATTERN")]
        packages: Vec<String>,
        /// Lifetime, e.g. 30d, 12h, 90m, 2w; no expiry when omitted.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// A label to recognise the token by.
        #[arg(long, value_name = "LABEL")]
        name: Option<String>,
    },
    /// List live tokens (never their values).
    List {
        /// Only this user's tokens.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token by its key (from `token list`).
    Revoke { key: String },
}

#[derive(Args, Debug, Default)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:4880]; port 0 picks a free port.
    #[arg(long, env = "GATEHOUSE_LISTEN", value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// URL clients use to reach this server (for tarball URLs), e.g. https://npm.example.com.
    #[arg(long, env = "GATEHOUSE_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user; the password is read from standard input.
    Add {
        name: String,
        /// Administrators may change every package and manage the server.
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        email: Option<String>,
        /// Read the password from the first line of standard input (required).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List users.
    List,
}

#[derive(Subcommand, Debug)]
enum RegistryCommand {
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

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve(ServeArgs::default()));
    let mut overrides = Overrides {
        config_file: cli.global.config,
        data_dir: cli.global.data_dir,
        ..Overrides::default()
    };
    if let Command::Serve(args) = &command {
        overrides.listen = args.listen.clone().or_else(|| std::env::var("GATEHOUSE_LISTEN").ok());
        overrides.public_url = args
            .public_url
            .clone()
            .or_else(|| std::env::var("GATEHOUSE_PUBLIC_URL").ok());
    }
    let config = Config::load(&overrides)?;
    match command {
        Command::Serve(_) => serve(config).await,
        Command::User(cmd) => user(config, cmd).await,
        Command::Registry(cmd) => registry(config, cmd).await,
        Command::Token(cmd) => token_command(config, cmd).await,
        Command::Audit { limit } => audit(config, limit).await,
        Command::Package(cmd) => package_command(config, cmd).await,
        Command::Push { registry, spec, to } => push(config, &registry, &spec, &to).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = listener.local_addr()?;
    let public_url = config.public_url.clone().unwrap_or_else(|| PublicUrl::from_addr(bound));
    let admin_password = std::env::var("GATEHOUSE_ADMIN_PASSWORD").ok().filter(|p| !p.is_empty());
    let app = App::start(config, public_url.clone(), admin_password).await?;
    app.watch_changes();
    let registries = app.meta.registries().await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "gatehouse listening on http://{bound} (public URL {})",
        public_url.as_str()
    )?;
    for registry in &registries {
        writeln!(
            out,
            "  registry {:<12} {}/",
            registry.name.as_str(),
            app.registry_base(registry)
        )?;
    }
    out.flush()?;
    drop(out);
    crate::http::serve(app, listener, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

async fn user(config: Config, cmd: UserCommand) -> anyhow::Result<()> {
    let meta = app::open_meta(&config).await?;
    match cmd {
        UserCommand::Add {
            name,
            admin,
            email,
            password_stdin: _,
        } => {
            if !valid_user_name(&name) {
                bail!("invalid user name {name:?}: use 1-64 characters of a-z, 0-9, '.', '-' and '_'");
            }
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            let password = line.trim_end_matches(['\r', '\n']).to_owned();
            let hash = password::hash(password).await?;
            match meta.create_user(&name, email.as_deref(), &hash, admin).await {
                Ok(_) => {}
                Err(StoreError::Conflict(_)) => bail!("a user named {name:?} already exists"),
                Err(e) => return Err(e.into()),
            }
            meta.append_audit(&AuditEntry {
                actor: Some("cli".into()),
                action: "user.create",
                detail: Some(format!("{name} admin={admin}")),
                ..AuditEntry::default()
            })
            .await?;
            println!("created user {name}{}", if admin { " (admin)" } else { "" });
        }
        UserCommand::List => {
            for user in meta.users().await? {
                let role = if user.is_admin { "admin" } else { "member" };
                println!("{}\t{role}\t{}", user.name, user.email.unwrap_or_default());
            }
        }
    }
    Ok(())
}

async fn registry(config: Config, cmd: RegistryCommand) -> anyhow::Result<()> {
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

async fn push(config: Config, registry: &str, spec: &str, to: &str) -> anyhow::Result<()> {
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

async fn package_command(config: Config, cmd: PackageCommand) -> anyhow::Result<()> {
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

async fn token_command(config: Config, cmd: TokenCommand) -> anyhow::Result<()> {
    let meta = app::open_meta(&config).await?;
    match cmd {
        TokenCommand::Create {
            user,
            read_only,
            cidrs,
            registries,
            packages,
            expires,
            name,
        } => {
            let owner = find_user(&meta, &user).await?;
            for cidr in &cidrs {
                Cidr::parse(cidr)?;
            }
            for registry in &registries {
                find_registry(&meta, registry).await?;
            }
            let expires_at = expires
                .as_deref()
                .map(parse_duration)
                .transpose()?
                .map(|d| now_millis() + i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let minted = token::issue(
                &meta,
                owner.id,
                TokenSpec {
                    name,
                    readonly: read_only,
                    cidr_whitelist: cidrs,
                    registries,
                    packages,
                    expires_at,
                },
            )
            .await?;
            meta.append_audit(&AuditEntry {
                actor: Some("cli".into()),
                action: "token.create",
                detail: Some(format!("key={} user={}", minted.key, owner.name)),
                ..AuditEntry::default()
            })
            .await?;
            eprintln!(
                "created token {} for {} (shown once; store it now)",
                minted.key, owner.name
            );
            println!("{}", minted.secret);
        }
        TokenCommand::List { user } => {
            let tokens = match user {
                Some(name) => meta.tokens_of(find_user(&meta, &name).await?.id).await?,
                None => meta.all_tokens().await?,
            };
            println!("KEY\tUSER\tTOKEN\tSCOPE\tCREATED\tLAST USED\tEXPIRES\tNAME");
            for t in tokens {
                let mut scope = vec![if t.readonly { "read-only" } else { "read-write" }.to_owned()];
                scope.extend(t.registries.iter().map(|r| format!("registry:{r}")));
                scope.extend(t.packages.iter().map(|p| format!("package:{p}")));
                scope.extend(t.cidr_whitelist.iter().map(|c| format!("cidr:{c}")));
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    t.key,
                    t.user.name,
                    t.display,
                    scope.join(","),
                    iso_time(t.created_at),
                    t.last_used_at.map(iso_time).unwrap_or_else(|| "never".into()),
                    t.expires_at.map(iso_time).unwrap_or_else(|| "never".into()),
                    t.name.unwrap_or_default()
                );
            }
        }
        TokenCommand::Revoke { key } => {
            if !meta.revoke_token(None, &key, now_millis()).await? {
                bail!("no live token with key {key:?}");
            }
            meta.append_audit(&AuditEntry {
                actor: Some("cli".into()),
                action: "token.revoke",
                detail: Some(format!("key={key}")),
                ..AuditEntry::default()
            })
            .await?;
            println!("revoked token {key}");
        }
    }
    Ok(())
}

async fn audit(config: Config, limit: u32) -> anyhow::Result<()> {
    let meta = app::open_meta(&config).await?;
    println!("TIME\tACTOR\tACTION\tREGISTRY\tPACKAGE\tVERSION\tFROM\tDETAIL");
    for (at, e) in meta.recent_audit(limit).await? {
        let field = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            iso_time(at),
            field(e.actor),
            e.action,
            field(e.registry),
            field(e.package),
            field(e.version),
            field(e.client_addr),
            field(e.detail)
        );
    }
    Ok(())
}

async fn find_registry(meta: &Meta, name: &str) -> anyhow::Result<Registry> {
    let name = RegistryName::parse(name)?;
    meta.registry(&name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no registry named \"{name}\""))
}

async fn find_user(meta: &Meta, name: &str) -> anyhow::Result<User> {
    meta.user(name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no user named {name:?}"))
}

async fn audit_cli(
    meta: &Meta,
    action: &'static str,
    registry: Option<&Registry>,
    detail: String,
) -> anyhow::Result<()> {
    meta.append_audit(&AuditEntry {
        actor: Some("cli".into()),
        action,
        registry: registry.map(|r| r.name.to_string()),
        detail: Some(detail),
        ..AuditEntry::default()
    })
    .await?;
    Ok(())
}

/// `30d`, `12h`, `90m`, `45s`, `2w`.
fn parse_duration(raw: &str) -> anyhow::Result<Duration> {
    let (number, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let count: u64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid duration {raw:?}: use e.g. 30d, 12h, 90m"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => bail!("invalid duration {raw:?}: use e.g. 30d, 12h, 90m"),
    };
    if count == 0 {
        bail!("a token lifetime must be longer than zero");
    }
    Ok(Duration::from_secs(count.saturating_mul(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d").expect("valid"), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_duration("90m").expect("valid"), Duration::from_secs(5400));
        for bad in ["", "d", "10", "10y", "0h", "-1d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
