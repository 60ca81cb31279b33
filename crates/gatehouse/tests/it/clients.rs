//! End-to-end with the real clients: each one publishes an unscoped and a scoped package to a
//! fresh server and installs both back into a fresh project, with a fresh HOME and cache.
//!
//! The clients are installed from the npm registry on first use (see `support::clients`); the
//! tests themselves only talk to the server on 127.0.0.1.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::TestServer;
use crate::support::clients::{ClientKind, Project, clients_or_skip, tarball_url};

const PASSWORD: &str = "e2e-password-1";
const VERSION: &str = "1.0.0";

#[test]
fn npm() {
    publish_and_install(ClientKind::Npm);
}

#[test]
fn pnpm() {
    publish_and_install(ClientKind::Pnpm);
}

#[test]
fn yarn_classic() {
    publish_and_install(ClientKind::YarnClassic);
}

#[test]
fn yarn_berry() {
    publish_and_install(ClientKind::YarnBerry);
}

#[test]
fn bun() {
    publish_and_install(ClientKind::Bun);
}

/// `module.exports` of each test package names the package and the client that published it.
fn index_js(name: &str, kind: ClientKind) -> String {
    format!(
        "module.exports = {:?};\n",
        format!("{name}@{VERSION} published by {}", kind.slug())
    )
}

fn publish_and_install(kind: ClientKind) {
    // The one-time install happens here, outside the timings below.
    let Some(clients) = clients_or_skip(&format!("clients::{}", kind.slug())) else {
        return;
    };
    let started = Instant::now();
    let server = TestServer::start();
    let user = format!("e2e-{}", kind.slug());
    server.add_user(&user, PASSWORD);
    let token = server.login("default", &user, PASSWORD);
    let registry = server.registry_url("default");
    assert!(registry.ends_with("/r/default/"), "unexpected registry URL {registry}");

    let slug = kind.slug();
    let packages = [format!("e2e-{slug}-pkg"), format!("@e2e/{slug}-lib")];

    for name in &packages {
        let step = Instant::now();
        let package = Project::new(kind);
        package.configure(&registry, &token);
        package.write_package(name, VERSION, &index_js(name, kind));
        package.publish();
        let doc = packument(&registry, &token, name);
        assert_eq!(
            doc["versions"][VERSION]["dist"]["tarball"].as_str(),
            Some(tarball_url(&registry, name, VERSION).as_str()),
            "dist.tarball of {name} after `{slug} publish`: {doc:#}"
        );
        eprintln!("e2e {slug}: published {name} in {:.1?}", step.elapsed());
    }

    let step = Instant::now();
    let app = Project::new(kind);
    app.configure(&registry, &token);
    app.install(&[(&packages[0], VERSION), (&packages[1], VERSION)]);
    eprintln!("e2e {slug}: installed both in {:.1?}", step.elapsed());

    for name in &packages {
        assert_eq!(
            app.read_installed(name, "index.js"),
            index_js(name, kind),
            "installed index.js of {name}"
        );
        let installed: Value = serde_json::from_str(&app.read_installed(name, "package.json")).expect("package.json");
        assert_eq!(installed["version"], VERSION, "installed version of {name}");

        let locked = app.assert_locked_to_registry(&registry, name, VERSION);
        if let Some(integrity) = &locked.integrity {
            let doc = packument(&registry, &token, name);
            assert_eq!(
                Some(integrity.as_str()),
                doc["versions"][VERSION]["dist"]["integrity"].as_str(),
                "{slug} lockfile integrity of {name} vs the packument"
            );
        }
    }
    eprintln!(
        "e2e {slug} {}: passed in {:.1?}",
        clients.version(kind),
        started.elapsed()
    );
}

/// The packument of `name`, fetched with the token (scoped names as `@scope%2fname`).
fn packument(registry: &str, token: &str, name: &str) -> Value {
    let url = format!("{registry}{}", name.replace('/', "%2f"));
    let response = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy() // the server is on 127.0.0.1; ignore HTTP(S)_PROXY from the environment
        .build()
        .expect("http client")
        .get(&url)
        .bearer_auth(token)
        .header("accept", "application/json")
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    let body = response.text().unwrap_or_default();
    assert!(status.is_success(), "GET {url}: {status}\n{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}
