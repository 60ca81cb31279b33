//! Upstreams: where a registry pulls what it does not hold. `client` speaks HTTP to
//! remote registries, `fetch` caches their packuments, `pull` brings tarballs in
//! through admission. Merging documents is pure protocol work (`npm::merge`).

pub mod client;
pub mod fetch;
pub mod pull;
pub mod push;
pub mod spec;

use crate::config::UpstreamSettings;
use client::{UpstreamAuth, UpstreamClient};
use fetch::{PackumentFetcher, Remote};
use gatehouse_store::registry::RegistryName;
use gatehouse_store::{Meta, UpstreamRow};
use spec::{SpecError, UpstreamSpec};

/// An upstream ready to be asked.
#[derive(Debug, Clone)]
pub enum Source {
    Remote {
        remote: Remote,
        /// Trusted with packages flagged internal.
        internal: bool,
        /// How the upstream is named in logs and audit entries.
        label: String,
    },
    Registry(RegistryName),
}

impl Source {
    pub fn label(&self) -> String {
        match self {
            Source::Remote { label, .. } => label.clone(),
            Source::Registry(name) => format!("registry:{name}"),
        }
    }
}

pub struct Upstreams {
    pub client: UpstreamClient,
    pub fetcher: PackumentFetcher,
    npmjs_url: String,
}

impl Upstreams {
    /// `cache_bytes` bounds the parsed upstream documents held in memory (briefly).
    pub fn new(meta: Meta, settings: &UpstreamSettings, cache_bytes: u64) -> Result<Self, reqwest::Error> {
        let client = UpstreamClient::new(settings)?;
        let npmjs_url = if settings.npmjs_url.ends_with('/') {
            settings.npmjs_url.clone()
        } else {
            format!("{}/", settings.npmjs_url)
        };
        Ok(Upstreams {
            fetcher: PackumentFetcher::new(meta, client.clone(), settings, cache_bytes),
            client,
            npmjs_url,
        })
    }

    pub fn source(&self, row: &UpstreamRow) -> Result<Source, SpecError> {
        let auth = match (&row.token, &row.basic_auth) {
            (Some(token), _) => UpstreamAuth::Bearer(token.clone()),
            (None, Some(pair)) => UpstreamAuth::Basic(pair.clone()),
            (None, None) => UpstreamAuth::None,
        };
        Ok(match UpstreamSpec::parse(&row.spec)? {
            UpstreamSpec::Npmjs => Source::Remote {
                remote: Remote {
                    id: row.id,
                    base: self.npmjs_url.clone(),
                    auth,
                },
                internal: row.internal,
                label: "npmjs".into(),
            },
            UpstreamSpec::Url(base) => Source::Remote {
                remote: Remote {
                    id: row.id,
                    base: base.clone(),
                    auth,
                },
                internal: row.internal,
                label: base,
            },
            UpstreamSpec::Registry(name) => Source::Registry(name),
        })
    }
}
