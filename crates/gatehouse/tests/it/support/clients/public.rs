//! The npm registry this machine reaches (the public one, or the mirror `npm config get registry`
//! names), for tests that install real public packages. Such tests call [`public_registry`] first
//! and return early, with a "skipped" line, when it is unreachable or `GATEHOUSE_OFFLINE=1`, so
//! the suite stays green offline; under `CI=true` they fail instead.

use std::io::Write as _;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::install::machine_npm_config;

/// Set to `1` to skip every test that needs the npm registry without probing it.
pub const OFFLINE_ENV: &str = "GATEHOUSE_OFFLINE";
/// A small, long-lived package whose packument the probe fetches.
const PROBE_PACKAGE: &str = "is-number";
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The npm registry the machine is configured for.
#[derive(Debug, Clone)]
pub struct PublicRegistry {
    /// Base URL with a trailing slash, e.g. `https://registry.npmjs.org/`.
    pub url: String,
    /// Its `host[:port]`, as npm's `replace-registry-host` names it.
    pub host: String,
}

impl PublicRegistry {
    /// Lets a sandboxed client command reach this registry: the sandbox drops proxy variables
    /// and the machine-wide npmrc (which may hold the CA file of a mirror).
    pub fn allow(&self, cmd: &mut Command) {
        for (key, value) in std::env::vars_os() {
            let lower = key.to_string_lossy().to_ascii_lowercase();
            if ["http_proxy", "https_proxy", "all_proxy", "no_proxy"].contains(&lower.as_str()) {
                cmd.env(key, value);
            }
        }
        if let Some(cafile) = machine_npm_config("cafile") {
            cmd.env("npm_config_cafile", cafile);
        }
    }

    /// Whether npm's default `replace-registry-host=npmjs` already covers this registry's
    /// tarball URLs (true for the public registry itself).
    pub fn is_npmjs(&self) -> bool {
        self.host == "registry.npmjs.org"
    }
}

/// The reachable npm registry, or `None` after printing why `test` is skipped. Probed once per
/// process: one packument GET with a short timeout.
pub fn public_registry(test: &str) -> Option<PublicRegistry> {
    static PROBED: OnceLock<Result<PublicRegistry, String>> = OnceLock::new();
    let probed = PROBED.get_or_init(probe);
    match probed {
        Ok(registry) => Some(registry.clone()),
        Err(why) => {
            // CI has every component the tests need: a missing one is a failure there.
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: {why}; under CI=true a test never skips");
            }
            // Straight to the stream, past libtest's capture: a skip must be visible.
            let line = format!("{test}: skipped: {why}\n");
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
            None
        }
    }
}

fn probe() -> Result<PublicRegistry, String> {
    if std::env::var(OFFLINE_ENV).is_ok_and(|v| v == "1") {
        return Err(format!("npm registry not used ({OFFLINE_ENV}=1)"));
    }
    let mut url = machine_npm_config("registry").unwrap_or_else(|| "https://registry.npmjs.org/".to_owned());
    if !url.ends_with('/') {
        url.push('/');
    }
    let host = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .filter(|host| !host.is_empty())
        .ok_or_else(|| format!("npm registry unreachable: cannot parse registry URL {url:?}"))?
        .to_owned();
    // Proxies from the environment apply: this is the machine talking to its registry.
    let client = reqwest::blocking::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .build()
        .map_err(|e| format!("npm registry unreachable: http client: {e}"))?;
    let probe_url = format!("{url}{PROBE_PACKAGE}");
    let response = client
        .get(&probe_url)
        .header("accept", "application/vnd.npm.install-v1+json")
        .send()
        .map_err(|e| format!("npm registry unreachable: GET {probe_url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "npm registry unreachable: GET {probe_url} answered {}",
            response.status()
        ));
    }
    Ok(PublicRegistry { url, host })
}
