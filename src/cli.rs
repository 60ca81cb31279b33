//! The `gatehouse` command line. Admin commands work directly on the data dir, so
//! they also work while the server runs (SQLite serialises the writers).

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use crate::app::{self, App};
use crate::auth::{password, valid_user_name};
use crate::config::{Config, Overrides, PublicUrl};
use crate::registry::RegistryName;
use crate::store::{AuditEntry, StoreError};

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
    },
    /// List registries.
    List,
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
        RegistryCommand::Create { name, public } => {
            let name = RegistryName::parse(&name)?;
            match meta.create_registry(&name, public).await {
                Ok(_) => {}
                Err(StoreError::Conflict(_)) => bail!("a registry named \"{name}\" already exists"),
                Err(e) => return Err(e.into()),
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
    }
    Ok(())
}
