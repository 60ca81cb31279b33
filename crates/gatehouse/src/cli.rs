//! The `gatehouse` command line. Admin commands work directly on the stores, through
//! the same services as the server's HTTP routes, so they also work while the server
//! runs (SQLite serialises the writers; servers follow the change log).

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use gatehouse_npm::name::PackageName;
use gatehouse_npm::packument::iso_time;
use gatehouse_npm::version::Version;
use gatehouse_server::app::{self, App};
use gatehouse_server::auth::cidr::Cidr;
use gatehouse_server::auth::token::TokenSpec;
use gatehouse_server::config::{Config, Overrides, PublicUrl};
use gatehouse_server::services::{Actor, Services};
use gatehouse_server::upstream::spec::UpstreamSpec;
use gatehouse_store::Meta;
use gatehouse_store::registry::{RegistryName, Role};
use gatehouse_store::storage::DatabaseUrl;

mod audit;
mod housekeeping;
mod import;
mod packages;
mod policy;
mod registries;
mod tokens;
mod trust;
mod users;

use packages::PackageCommand;
pub use policy::Exit;
use policy::{AdvisoryCommand, PolicyCommand, QuarantineCommand};
use registries::RegistryCommand;
use tokens::TokenCommand;
use users::UserCommand;

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
    Audit(audit::AuditArgs),
    /// A registry's firewall: its policy, its decisions, exceptions, and what it would
    /// do to a project (`policy check`).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Versions the policy holds for review: list, approve, reject.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// The advisory database the firewall and `npm audit` use.
    #[command(subcommand)]
    Advisories(AdvisoryCommand),
    /// Trusted publishing: which CI jobs may publish a package with an OIDC token.
    #[command(subcommand)]
    Trust(trust::TrustCommand),
    /// Move in from another registry.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Pull every package version a lockfile pins into a registry through its upstreams,
    /// so it can serve the project with the upstreams unplugged.
    Warm {
        registry: String,
        /// package-lock.json (v2, v3), pnpm-lock.yaml, yarn.lock (classic or berry) or bun.lock.
        #[arg(long, value_name = "FILE")]
        lockfile: PathBuf,
        /// Pulls at a time.
        #[arg(long, default_value_t = 8)]
        jobs: usize,
    },
    /// Copy-paste setup of a registry for every client (what the web app's Setup tab
    /// shows): .npmrc, .yarnrc.yml, bunfig.toml, .upmconfig.toml, CI files.
    Setup {
        registry: String,
        /// Only this client's snippets.
        #[arg(long, value_parser = ["npm", "pnpm", "yarn", "berry", "bun", "unity", "ci"])]
        client: Option<String>,
        /// A token to fill in; without one the snippets read it from NPM_TOKEN.
        #[arg(long, env = "GATEHOUSE_SETUP_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The npm scope of the scoped examples [default: @REGISTRY].
        #[arg(long)]
        scope: Option<String>,
    },
    /// Copy a running (or stopped) embedded install into DEST, consistently: the
    /// database as of one moment, then every tarball it refers to.
    Backup { dest: PathBuf },
    /// Make a backup (from `gatehouse backup`) the data of this install, which must
    /// not hold one yet; run `gatehouse check` after it.
    Restore { source: PathBuf },
    /// Copy this install, stopped, to other stores (embedded to PostgreSQL and S3, or
    /// back): every row, then every tarball, each verified. Run it again after an
    /// interruption: what is there already is skipped.
    Migrate {
        /// The destination's database: postgres://… or sqlite://FILE.
        #[arg(long, value_name = "URL")]
        to_database: String,
        /// The destination's tarballs: s3://BUCKET[/PREFIX] (endpoint, region and
        /// credentials from AWS_*) or file://DIR.
        #[arg(long, value_name = "URL")]
        to_blobs: String,
    },
    /// Verify that every version's tarball is stored and hashes to its name, and list
    /// the blobs no version refers to. Exit status 1 when anything is wrong.
    Check,
    /// Remove the blobs no version refers to, once they are older than the grace period.
    Gc {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Blobs written or reused more recently are kept (a publish may be about to
        /// refer to them), e.g. 1h, 30m.
        #[arg(long, default_value = "1h", value_name = "DURATION")]
        grace: String,
    },
}

#[derive(Args, Debug, Default)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:4880]; port 0 picks a free port.
    #[arg(long, env = "GATEHOUSE_LISTEN", value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// URL clients use to reach this server (for tarball URLs), e.g. https://npm.example.com.
    #[arg(long, env = "GATEHOUSE_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// There is no --port: say what to use instead of a bare "unexpected argument".
    #[arg(long, hide = true, value_name = "PORT")]
    port: Option<String>,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve(ServeArgs::default()));
    let mut overrides = Overrides {
        config_file: cli.global.config,
        data_dir: cli.global.data_dir,
        ..Overrides::default()
    };
    if let Command::Serve(ServeArgs { port: Some(port), .. }) = &command {
        bail!("gatehouse serve has no --port; use --listen ADDR:PORT, e.g. --listen 127.0.0.1:{port}");
    }
    if let Command::Serve(args) = &command {
        overrides.listen = args.listen.clone().or_else(|| std::env::var("GATEHOUSE_LISTEN").ok());
        overrides.public_url = args
            .public_url
            .clone()
            .or_else(|| std::env::var("GATEHOUSE_PUBLIC_URL").ok());
    }
    overrides.database_url = std::env::var("GATEHOUSE_DATABASE_URL").ok().filter(|v| !v.is_empty());
    overrides.blob_url = std::env::var("GATEHOUSE_BLOB_URL").ok().filter(|v| !v.is_empty());
    let config = Config::load(&overrides)?;
    match command {
        Command::Serve(_) => serve(config).await,
        Command::User(cmd) => users::user(config, cmd).await,
        Command::Registry(cmd) => registries::registry(config, cmd).await,
        Command::Token(cmd) => tokens::token_command(config, cmd).await,
        Command::Audit(args) => audit::audit(config, args).await,
        Command::Policy(cmd) => policy::policy_command(config, cmd).await,
        Command::Quarantine(cmd) => policy::quarantine_command(config, cmd).await,
        Command::Advisories(cmd) => policy::advisory_command(config, cmd).await,
        Command::Check => housekeeping::check(config).await,
        Command::Import(cmd) => import::import_command(config, cmd).await,
        Command::Trust(cmd) => trust::trust_command(config, cmd).await,
        Command::Warm {
            registry,
            lockfile,
            jobs,
        } => packages::warm(config, &registry, &lockfile, jobs).await,
        Command::Backup { dest } => housekeeping::backup(config, &dest).await,
        Command::Restore { source } => housekeeping::restore(config, &source).await,
        Command::Migrate { to_database, to_blobs } => housekeeping::migrate(config, &to_database, &to_blobs).await,
        Command::Gc { dry_run, grace } => housekeeping::gc(config, dry_run, &grace).await,
        Command::Package(cmd) => packages::package_command(config, cmd).await,
        Command::Push { registry, spec, to } => packages::push(config, &registry, &spec, &to).await,
        Command::Setup {
            registry,
            client,
            token,
            scope,
        } => registries::setup(config, &registry, client.as_deref(), token.as_deref(), scope.as_deref()).await,
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
    gatehouse_server::advisory_sync::spawn(&app);
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
    gatehouse_server::http::serve(app, listener, shutdown_signal()).await?;
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

/// Admin commands never create a store: one that isn't there means the command
/// looks in the wrong place (another directory, a missing flag).
fn require_existing_store(config: &Config) -> anyhow::Result<()> {
    match &config.database.url {
        DatabaseUrl::Sqlite(path) if !path.exists() => bail!(
            "no Gatehouse database at {}: point this command at the server's data with --data-dir DIR, \
             --config FILE or GATEHOUSE_DATA_DIR (the server creates it on first start: gatehouse serve)",
            path.display()
        ),
        // PostgreSQL: a missing database fails to connect (an empty one gets the schema).
        DatabaseUrl::Sqlite(_) | DatabaseUrl::Postgres(_) => Ok(()),
    }
}

/// The stores the configuration names and the services over them, for a command.
async fn open(config: &Config) -> anyhow::Result<(Meta, Services)> {
    let storage = open_stores(config).await?;
    let services = app::cli_services(&storage.meta);
    Ok((storage.meta, services))
}

/// The stores the configuration names, which must exist.
async fn open_stores(config: &Config) -> anyhow::Result<gatehouse_store::storage::Storage> {
    require_existing_store(config)?;
    Ok(app::open_storage(config).await?)
}

async fn find_registry(services: &Services, name: &str) -> anyhow::Result<gatehouse_store::Registry> {
    Ok(services.registry(&RegistryName::parse(name)?).await?)
}
