//! Settings: built-in defaults, overridden by the TOML file, overridden by
//! environment variables and flags (clap merges those two). Validated once at start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_npm::provenance::TrustedRoot;

use serde::Deserialize;

pub use gatehouse_store::Durability;
use gatehouse_store::registry::RegistryName;
use gatehouse_store::storage::{BlobSettings, BlobUrl, DatabaseSettings, DatabaseUrl};

use crate::auth::cidr::Cidr;
use gatehouse_policy::document::Age;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4880";
pub const DEFAULT_DATA_DIR: &str = "gatehouse-data";

/// Everything the server needs to know, after merging all sources.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Where the metadata lives (the data dir's `gatehouse.db` unless set) and the
    /// PostgreSQL pool's size.
    pub database: DatabaseSettings,
    /// Where the tarballs live (the data dir's `blobs/` unless set); for S3, with the
    /// endpoint, region and credentials resolved (file < `AWS_*` environment).
    pub blobs: BlobSettings,
    /// `[blobs] redirect`: tarball downloads answered with a short-lived presigned URL
    /// of the bucket (S3 only), for a CDN or to keep the bytes off the replicas.
    pub tarball_redirects: bool,
    pub listen: SocketAddr,
    /// Base URL clients reach us at; tarball URLs are built from it. `None` means
    /// "derive from the address we bound".
    pub public_url: Option<PublicUrl>,
    pub allow_registration: bool,
    /// Flag a package internal when its name is first published into a registry
    /// (dependency-confusion guard).
    pub internal_by_default: bool,
    pub durability: Durability,
    pub limits: Limits,
    /// Bytes of prepared (gzipped) packuments kept in memory; also bounds the parsed
    /// upstream documents held for a few seconds while they are merged.
    pub packument_cache_bytes: u64,
    /// Registries to create (if missing) and their settings, applied at start.
    pub registries: BTreeMap<RegistryName, RegistrySettings>,
    /// Peers allowed to say who the client is (`X-Forwarded-For`); nobody by default.
    pub trusted_proxies: Vec<Cidr>,
    pub upstream: UpstreamSettings,
    /// Registry serving tarballs requested at the host root (`/{name}/-/{file}.tgz`),
    /// for callers whose token doesn't name one.
    pub root_registry: RegistryName,
    pub advisories: AdvisorySettings,
    /// Trusted publishing: the OIDC issuers whose CI jobs may publish.
    pub oidc: crate::oidc::OidcSettings,
    /// What provenance bundles are verified against: `[provenance] trusted_root`, or
    /// Sigstore's public-good instance.
    pub provenance_root: Arc<TrustedRoot>,
    pub web: WebSettings,
    pub metrics: MetricsSettings,
}

/// `[metrics]`: `/-/metrics` and the per-request counting behind it.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    pub enabled: bool,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings { enabled: true }
    }
}

/// `[web]`: the web app at `/-/ui/`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    /// How long a sign-in lasts (`"8h"`); tests set seconds.
    pub session_ttl: Age,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            session_ttl: Age { millis: 8 * 3_600_000 },
        }
    }
}

/// `[provenance]`: the Sigstore trust root (a `trusted_root.json`, as Sigstore's TUF
/// repository distributes it) for a private Sigstore instance, or for tests.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ProvenanceSection {
    trusted_root: Option<PathBuf>,
}

impl ProvenanceSection {
    fn load(&self) -> Result<TrustedRoot, ConfigError> {
        let Some(path) = &self.trusted_root else {
            return Ok(TrustedRoot::public_good());
        };
        let json = std::fs::read(path).map_err(|cause| ConfigError::Read {
            path: path.clone(),
            cause,
        })?;
        TrustedRoot::parse(&json)
            .map_err(|e| ConfigError::Invalid(format!("[provenance] trusted_root {}: {e}", path.display())))
    }
}

/// `[advisories]`: where the advisory database is synced from, and when it is stale.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdvisorySettings {
    /// An OSV export to import on a schedule: an http(s) URL (a zip such as the OSV
    /// project's `npm/all.zip`, or a JSON file) or a path (file, folder or zip).
    pub sync_url: Option<String>,
    /// How often to sync (`"1d"`, `"6h"`); needs `sync_url`.
    pub sync_every: Option<Age>,
    /// `npm audit` says the database is stale when its last import is older.
    pub stale_after: Age,
}

impl Default for AdvisorySettings {
    fn default() -> Self {
        AdvisorySettings {
            sync_url: None,
            sync_every: None,
            stale_after: Age { millis: 7 * 86_400_000 },
        }
    }
}

/// How upstreams are reached and cached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSettings {
    /// What the upstream spec `npmjs` means.
    pub npmjs_url: String,
    /// How long an upstream packument is used before it is revalidated.
    pub max_age_secs: u64,
    /// How long an upstream 404 is remembered.
    pub not_found_ttl_secs: u64,
    pub connect_timeout_ms: u64,
    /// Until the response headers arrive.
    pub first_byte_timeout_ms: u64,
    /// For the whole response body.
    pub transfer_timeout_ms: u64,
    pub max_packument_bytes: u64,
    pub max_tarball_bytes: u64,
    /// Redirects are refused unless this is set (they can point anywhere).
    pub follow_redirects: bool,
    /// Consecutive failures that open an upstream's circuit breaker…
    pub breaker_failures: u32,
    /// …and how long it then stays open (answers come from the stored copies).
    pub breaker_open_secs: u64,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            npmjs_url: "https://registry.npmjs.org/".into(),
            max_age_secs: 300,
            not_found_ttl_secs: 60,
            connect_timeout_ms: 5_000,
            first_byte_timeout_ms: 20_000,
            transfer_timeout_ms: 120_000,
            max_packument_bytes: 64 * 1024 * 1024,
            max_tarball_bytes: 256 * 1024 * 1024,
            follow_redirects: false,
            breaker_failures: 5,
            breaker_open_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body accepted (a publish carries the tarball in base64).
    pub max_body_bytes: u64,
    /// Largest total size a tarball may unpack to (gzip-bomb guard).
    pub max_unpacked_bytes: u64,
    /// Most entries a tarball may hold.
    pub max_tarball_entries: u64,
    /// A request's headers must have arrived this long after its first byte (or after
    /// the connection was accepted); slower connections are closed.
    pub header_timeout_ms: u64,
    /// A request body may pause this long between two pieces (answered 408)…
    pub body_timeout_ms: u64,
    /// …and take this long in all.
    pub body_total_timeout_ms: u64,
    /// A connection on which nothing moves (an idle keep-alive connection, a client
    /// that stopped reading its response) is closed after this; a request being
    /// handled is not timed otherwise.
    pub idle_timeout_ms: u64,
    /// Connections served at once; further ones wait (in the listen backlog) until one
    /// closes.
    pub max_connections: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 128 * 1024 * 1024,
            max_unpacked_bytes: 512 * 1024 * 1024,
            max_tarball_entries: 100_000,
            header_timeout_ms: 60_000,
            body_timeout_ms: 60_000,
            body_total_timeout_ms: 600_000,
            idle_timeout_ms: 75_000,
            max_connections: 1024,
        }
    }
}

impl Limits {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    pub fn body_total_timeout(&self) -> Duration {
        Duration::from_millis(self.body_total_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(format!("[limits] {message}")));
        for (key, value) in [
            ("max_body_bytes", self.max_body_bytes),
            ("max_unpacked_bytes", self.max_unpacked_bytes),
            ("max_tarball_entries", self.max_tarball_entries),
            ("max_connections", u64::from(self.max_connections)),
        ] {
            if value == 0 {
                return invalid(format!("{key} must be greater than zero"));
            }
        }
        // Below 100 ms nothing but loopback keeps up; above a day a timeout guards nothing.
        for (key, value) in [
            ("header_timeout_ms", self.header_timeout_ms),
            ("body_timeout_ms", self.body_timeout_ms),
            ("body_total_timeout_ms", self.body_total_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
        ] {
            if !(100..=86_400_000).contains(&value) {
                return invalid(format!(
                    "{key} = {value} is out of range: give milliseconds from 100 to 86400000 (a day)"
                ));
            }
        }
        if self.body_total_timeout_ms < self.body_timeout_ms {
            return invalid(format!(
                "body_total_timeout_ms ({}) is shorter than body_timeout_ms ({}): the whole body cannot take less time than one pause in it",
                self.body_total_timeout_ms, self.body_timeout_ms
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySettings {
    /// Anyone may read without credentials. Publishing always needs a login.
    pub public: bool,
    /// Upstreams in order (`npmjs`, a URL, `registry:NAME`). When set, it replaces
    /// the registry's list at every start; when absent, the CLI manages the list.
    pub upstreams: Option<Vec<String>>,
    /// The registry's policy (`[registries.NAME.policy]`). When set, it replaces the
    /// registry's policy at every start; when absent, `gatehouse policy set` manages it.
    pub policy: Option<toml::Table>,
}

impl RegistrySettings {
    /// The policy as a document of its own, as `gatehouse policy set` takes it.
    pub fn policy_document(&self) -> Option<String> {
        self.policy.as_ref().map(|table| table.to_string())
    }
}

/// A validated absolute http(s) base URL, stored without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let trimmed = raw.trim_end_matches('/');
        let rest = trimmed
            .strip_prefix("http://")
            .or_else(|| trimmed.strip_prefix("https://"))
            .ok_or_else(|| ConfigError::Invalid(format!("public URL {raw:?} must start with http:// or https://")))?;
        if rest.is_empty() || rest.contains(['?', '#', ' ']) {
            return Err(ConfigError::Invalid(format!(
                "public URL {raw:?} is not a valid base URL"
            )));
        }
        Ok(PublicUrl(trimmed.to_owned()))
    }

    pub fn from_addr(addr: SocketAddr) -> Self {
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else if addr.is_ipv6() {
            format!("[{}]", addr.ip())
        } else {
            addr.ip().to_string()
        };
        PublicUrl(format!("http://{host}:{}", addr.port()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// The config file's shape. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    database: Option<DatabaseSection>,
    blobs: Option<BlobSection>,
    listen: Option<String>,
    public_url: Option<String>,
    allow_registration: Option<bool>,
    internal_by_default: Option<bool>,
    durability: Option<Durability>,
    packument_cache_bytes: Option<u64>,
    limits: Option<Limits>,
    registries: BTreeMap<String, RegistrySettings>,
    trusted_proxies: Vec<String>,
    upstream: Option<UpstreamSettings>,
    root_registry: Option<String>,
    advisories: Option<AdvisorySettings>,
    oidc: Option<crate::oidc::OidcSettings>,
    provenance: ProvenanceSection,
    web: Option<WebSettings>,
    metrics: Option<MetricsSettings>,
}

/// `[database]`: where the metadata lives, as a URL, and the pool's size.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseSection {
    url: Option<String>,
    max_connections: Option<u32>,
}

/// `[blobs]`: where the tarballs live, as a URL; for `s3://`, where the bucket's
/// server is (`AWS_ENDPOINT_URL` and `AWS_REGION` override these).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlobSection {
    url: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    redirect: Option<bool>,
}

/// Values from flags or the environment; `None` when neither was given.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    /// `GATEHOUSE_DATABASE_URL`
    pub database_url: Option<String>,
    /// `GATEHOUSE_BLOB_URL`
    pub blob_url: Option<String>,
    pub listen: Option<String>,
    pub public_url: Option<String>,
}

impl Config {
    /// Merge defaults < file < overrides and validate. Reports the first problem found.
    pub fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
        let file = match &overrides.config_file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = overrides
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let listen_raw = overrides
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_raw.parse::<SocketAddr>().map_err(|_| {
            ConfigError::Invalid(format!(
                "listen address {listen_raw:?} is not ADDR:PORT (e.g. 127.0.0.1:4880)"
            ))
        })?;
        let public_url = overrides
            .public_url
            .clone()
            .or(file.public_url)
            .map(|raw| PublicUrl::parse(&raw))
            .transpose()?;
        let mut registries = BTreeMap::new();
        for (name, settings) in file.registries {
            let name = RegistryName::parse(&name).map_err(|e| ConfigError::Invalid(e.to_string()))?;
            if let Some(document) = settings.policy_document() {
                gatehouse_policy::document::Policy::parse(&document)
                    .map_err(|e| ConfigError::Invalid(format!("[registries.{name}.policy]: {e}")))?;
            }
            registries.insert(name, settings);
        }
        let trusted_proxies = file
            .trusted_proxies
            .iter()
            .map(|raw| Cidr::parse(raw).map_err(|e| ConfigError::Invalid(format!("trusted_proxies: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let limits = file.limits.unwrap_or_default();
        limits.validate()?;
        let database = database_settings(overrides, file.database.unwrap_or_default(), &data_dir)?;
        let blob_section = file.blobs.unwrap_or_default();
        let tarball_redirects = blob_section.redirect.unwrap_or(false);
        let blobs = blob_settings(overrides, blob_section, &data_dir)?;
        let advisories = file.advisories.unwrap_or_default();
        if advisories.sync_every.is_some() != advisories.sync_url.is_some() {
            return Err(ConfigError::Invalid(
                "[advisories]: sync_url and sync_every go together (what to import, and how often)".into(),
            ));
        }
        if advisories.sync_every.is_some_and(|every| every.millis < 60_000) {
            return Err(ConfigError::Invalid(
                "[advisories] sync_every must be at least 1m".into(),
            ));
        }
        let oidc = file.oidc.unwrap_or_default();
        oidc.validate().map_err(ConfigError::Invalid)?;
        let provenance_root = Arc::new(file.provenance.load()?);
        let web = file.web.unwrap_or_default();
        if web.session_ttl.millis < 1_000 {
            return Err(ConfigError::Invalid("[web] session_ttl must be at least 1s".into()));
        }
        Ok(Config {
            web,
            metrics: file.metrics.unwrap_or_default(),
            advisories,
            oidc,
            provenance_root,
            database,
            blobs,
            tarball_redirects,
            data_dir,
            listen,
            public_url,
            allow_registration: file.allow_registration.unwrap_or(false),
            internal_by_default: file.internal_by_default.unwrap_or(true),
            durability: file.durability.unwrap_or_default(),
            limits,
            packument_cache_bytes: file.packument_cache_bytes.unwrap_or(64 * 1024 * 1024),
            registries,
            trusted_proxies,
            upstream: file.upstream.unwrap_or_default(),
            root_registry: RegistryName::parse(file.root_registry.as_deref().unwrap_or("default"))
                .map_err(|e| ConfigError::Invalid(format!("root_registry: {e}")))?,
        })
    }
}

fn url_error(e: gatehouse_store::storage::UrlError) -> ConfigError {
    ConfigError::Invalid(e.to_string())
}

/// `[database]` with `GATEHOUSE_DATABASE_URL` over its `url`.
fn database_settings(
    overrides: &Overrides,
    section: DatabaseSection,
    data_dir: &Path,
) -> Result<DatabaseSettings, ConfigError> {
    let url = match overrides.database_url.clone().or(section.url) {
        Some(url) => DatabaseUrl::parse(&url).map_err(url_error)?,
        None => DatabaseUrl::Sqlite(data_dir.join("gatehouse.db")),
    };
    let mut settings = DatabaseSettings::new(url);
    if let Some(max) = section.max_connections {
        if max == 0 {
            return Err(ConfigError::Invalid(
                "[database] max_connections must be at least 1".into(),
            ));
        }
        settings.max_connections = max;
    }
    Ok(settings)
}

/// `[blobs]` with `GATEHOUSE_BLOB_URL` over its `url`, and for S3 the `AWS_*`
/// environment over `endpoint` and `region`.
fn blob_settings(overrides: &Overrides, section: BlobSection, data_dir: &Path) -> Result<BlobSettings, ConfigError> {
    let url = match overrides.blob_url.clone().or(section.url) {
        Some(url) => BlobUrl::parse(&url).map_err(url_error)?,
        None => BlobUrl::File(data_dir.join("blobs")),
    };
    match url {
        BlobUrl::File(dir) => match (&section.endpoint, &section.region, section.redirect) {
            (None, None, None | Some(false)) => Ok(BlobSettings::File(dir)),
            (None, None, Some(true)) => Err(ConfigError::Invalid(
                "[blobs] redirect is for an s3:// url: a folder has no URLs to redirect to".into(),
            )),
            _ => Err(ConfigError::Invalid(
                "[blobs] endpoint and region are for an s3:// url; the blobs are in a folder".into(),
            )),
        },
        BlobUrl::S3(location) => {
            if let Some(endpoint) = &section.endpoint
                && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            {
                return Err(ConfigError::Invalid(format!(
                    "[blobs] endpoint {endpoint:?} is not an http:// or https:// URL"
                )));
            }
            let mut settings = location.settings();
            settings.endpoint = section.endpoint;
            settings.region = section.region;
            Ok(BlobSettings::S3(settings.with_env()))
        }
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
        path: path.to_owned(),
        cause,
    })?;
    toml::from_str(&text).map_err(|e| {
        // Say where: the message alone ("unknown variant …") doesn't name the key.
        let location = e
            .span()
            .and_then(|span| text.get(..span.start))
            .map(|before| {
                let line = before.matches('\n').count() + 1;
                let source = text.lines().nth(line - 1).unwrap_or_default().trim();
                format!(" (line {line}: {source})")
            })
            .unwrap_or_default();
        ConfigError::Parse {
            path: path.to_owned(),
            message: format!("{}{location}", e.message()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_beat_the_file_and_the_file_beats_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\npublic_url = \"https://npm.example.com/\"\n[registries.team]\npublic = true\n",
        )
        .expect("write");
        let config = Config::load(&Overrides {
            config_file: Some(path),
            listen: Some("127.0.0.1:9001".into()),
            ..Overrides::default()
        })
        .expect("valid");
        assert_eq!(config.listen.port(), 9001);
        assert_eq!(config.public_url.expect("set").as_str(), "https://npm.example.com");
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        let team = RegistryName::parse("team").expect("valid");
        assert!(config.registries[&team].public);
    }

    #[test]
    fn the_stores_come_from_their_sections_and_the_urls_from_overrides() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.toml");
        std::fs::write(
            &path,
            "[database]\nurl = \"sqlite://other.db\"\nmax_connections = 32\n\
             [blobs]\nurl = \"s3://tarballs/prod\"\nendpoint = \"http://127.0.0.1:9000\"\nregion = \"eu-west-1\"\n",
        )
        .expect("write");
        let overrides = Overrides {
            config_file: Some(path.clone()),
            ..Overrides::default()
        };
        let config = Config::load(&overrides).expect("valid");
        assert_eq!(config.database.url, DatabaseUrl::Sqlite(PathBuf::from("other.db")));
        assert_eq!(config.database.max_connections, 32);
        let BlobSettings::S3(s3) = &config.blobs else {
            panic!("an S3 blob store: {:?}", config.blobs)
        };
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("tarballs", "prod"));
        // The AWS_* environment may override these; where it doesn't, the file says.
        if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
            assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        }
        if std::env::var_os("AWS_REGION").is_none() {
            assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
        }
        // GATEHOUSE_DATABASE_URL and GATEHOUSE_BLOB_URL beat the file, key by key.
        let config = Config::load(&Overrides {
            database_url: Some("postgres://gh@db/gatehouse".into()),
            blob_url: Some("file:///srv/blobs".into()),
            ..overrides.clone()
        })
        .expect_err("an endpoint for a blob folder is a mistake");
        assert_eq!(
            config.to_string(),
            "[blobs] endpoint and region are for an s3:// url; the blobs are in a folder"
        );
        std::fs::write(&path, "[database]\nmax_connections = 4\n").expect("write");
        let config = Config::load(&Overrides {
            database_url: Some("postgres://gh@db/gatehouse".into()),
            ..overrides.clone()
        })
        .expect("valid");
        assert_eq!(
            config.database.url,
            DatabaseUrl::Postgres("postgres://gh@db/gatehouse".into())
        );
        assert_eq!(config.database.max_connections, 4);
        assert_eq!(
            config.blobs,
            BlobSettings::File(PathBuf::from(DEFAULT_DATA_DIR).join("blobs"))
        );
        assert!(!config.tarball_redirects, "off unless asked");
        // Redirects need a bucket's URLs.
        std::fs::write(&path, "[blobs]\nurl = \"s3://tarballs\"\nredirect = true\n").expect("write");
        let config = Config::load(&Overrides {
            blob_url: None,
            ..overrides.clone()
        })
        .expect("valid");
        assert!(config.tarball_redirects);
        let refused = Config::load(&Overrides {
            blob_url: Some("file:///srv/blobs".into()),
            ..overrides
        })
        .expect_err("no URLs to redirect to");
        assert_eq!(
            refused.to_string(),
            "[blobs] redirect is for an s3:// url: a folder has no URLs to redirect to"
        );
    }

    #[test]
    fn a_trust_root_that_is_missing_or_broken_stops_the_start_saying_which() {
        let dir = tempfile::tempdir().expect("tempdir");
        let load = |root: &Path| {
            let path = dir.path().join("g.toml");
            std::fs::write(
                &path,
                format!("[provenance]\ntrusted_root = {:?}\n", root.display().to_string()),
            )
            .expect("write");
            Config::load(&Overrides {
                config_file: Some(path),
                ..Overrides::default()
            })
        };
        let missing = dir.path().join("absent.json");
        let err = load(&missing).expect_err("missing").to_string();
        assert!(err.contains("absent.json"), "{err}");
        let broken = dir.path().join("root.json");
        std::fs::write(&broken, "{\"certificateAuthorities\": []}").expect("write");
        let err = load(&broken).expect_err("broken").to_string();
        assert!(
            err.contains("[provenance] trusted_root") && err.contains("lists no certificate authority"),
            "{err}"
        );
        // Without the section, Sigstore's public-good root.
        assert!(Config::load(&Overrides::default()).is_ok());
    }

    #[test]
    fn bad_values_are_reported_clearly() {
        let err = Config::load(&Overrides {
            listen: Some("localhost".into()),
            ..Overrides::default()
        })
        .expect_err("invalid");
        assert!(err.to_string().contains("is not ADDR:PORT"), "{err}");
        let err = PublicUrl::parse("ftp://x").expect_err("invalid");
        assert!(err.to_string().contains("must start with http"), "{err}");
    }

    #[test]
    fn connection_limits_are_validated_with_the_key_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.toml");
        for (toml, needle) in [
            (
                "[limits]\nheader_timeout_ms = 0\n",
                "header_timeout_ms = 0 is out of range",
            ),
            (
                "[limits]\nidle_timeout_ms = 99\n",
                "idle_timeout_ms = 99 is out of range",
            ),
            (
                "[limits]\nmax_connections = 0\n",
                "max_connections must be greater than zero",
            ),
            (
                "[limits]\nbody_timeout_ms = 5000\nbody_total_timeout_ms = 1000\n",
                "body_total_timeout_ms (1000) is shorter than body_timeout_ms (5000)",
            ),
            ("[limits]\nheader_timeout = \"5s\"\n", "header_timeout"),
        ] {
            std::fs::write(&path, toml).expect("write");
            let err = Config::load(&Overrides {
                config_file: Some(path.clone()),
                ..Overrides::default()
            })
            .expect_err(toml);
            assert!(err.to_string().contains(needle), "{toml}: {err}");
        }
        std::fs::write(&path, "[limits]\nheader_timeout_ms = 2000\nmax_connections = 8\n").expect("write");
        let config = Config::load(&Overrides {
            config_file: Some(path),
            ..Overrides::default()
        })
        .expect("valid");
        assert_eq!(config.limits.header_timeout(), Duration::from_secs(2));
        assert_eq!(config.limits.max_connections, 8);
        assert_eq!(config.limits.body_timeout(), Duration::from_secs(60));
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.toml");
        std::fs::write(&path, "listne = \"127.0.0.1:9000\"\n").expect("write");
        let err = Config::load(&Overrides {
            config_file: Some(path),
            ..Overrides::default()
        })
        .expect_err("typo refused");
        assert!(err.to_string().contains("listne"), "{err}");
    }
}
