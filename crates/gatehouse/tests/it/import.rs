//! Moving in from a real Verdaccio 6: packages published to it with the real npm
//! (scoped and not, prereleases on their own tag, a deprecation, an extra dist-tag), a
//! public package it cached from its uplink, and its htpasswd users, imported with
//! `gatehouse import verdaccio` into a running Gatehouse. The firewall judges every
//! version, broken input is named and loses nothing, and a re-run finishes the job.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha512};

use crate::support::clients::{ClientKind, Project, clients_or_skip, output_text};
use crate::support::fake_upstream::FakeUpstream;
use crate::support::verdaccio::Verdaccio;
use crate::support::*;

const ALICE_PASSWORD: &str = "alice-secret-1";

/// Publishes `name@version` from `project` (index.js names its version) with `extra` args.
fn publish_to_verdaccio(project: &Project, name: &str, version: &str, extra: &[&str]) {
    project.write_package(name, version, &format!("module.exports = '{name}@{version}';\n"));
    let mut args = vec!["publish"];
    args.extend_from_slice(extra);
    project.run(&args);
}

fn sha512_hex(bytes: &[u8]) -> String {
    hex::encode(Sha512::digest(bytes))
}

fn tarball_from(server: &TestServer, token: &str, packument: &Value, version: &str) -> Vec<u8> {
    let url = packument["versions"][version]["dist"]["tarball"]
        .as_str()
        .expect("tarball url");
    assert!(url.starts_with(&server.base), "{url} is served by Gatehouse");
    let response = http().get(url).bearer_auth(token).send().expect("tarball");
    assert_eq!(response.status().as_u16(), 200, "{url}");
    response.bytes().expect("tarball bytes").to_vec()
}

fn import(server: &TestServer, verdaccio: &Verdaccio, extra: &[&str]) -> (bool, String, String) {
    let storage = verdaccio.storage.to_str().expect("utf-8");
    let htpasswd = verdaccio.htpasswd.to_str().expect("utf-8");
    let mut args = vec![
        "import",
        "verdaccio",
        storage,
        "--registry",
        "acme",
        "--htpasswd",
        htpasswd,
    ];
    args.extend_from_slice(extra);
    let out = server.cli(&args, "");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An OSV record that convicts `name@version` of malware (blocked by every policy).
fn malware_advisory(dir: &Path, name: &str, version: &str) -> std::path::PathBuf {
    let path = dir.join("MAL-2026-0001.json");
    let record = json!({
        "id": "MAL-2026-0001",
        "modified": "2026-11-30T00:00:00Z",
        "published": "2026-11-30T00:00:00Z",
        "summary": format!("Malicious code in {name} (npm)"),
        "affected": [{"package": {"ecosystem": "npm", "name": name}, "versions": [version]}],
    });
    std::fs::write(&path, record.to_string()).expect("write advisory");
    path
}

#[test]
fn a_verdaccio_storage_folder_moves_in_through_the_firewall() {
    if clients_or_skip("import::verdaccio").is_none() {
        return;
    }
    let upstream = FakeUpstream::start();
    let cached_tarball = upstream.publish("cached-dep", "1.0.0");
    let Some(mut verdaccio) = Verdaccio::start("import::verdaccio", &upstream.url) else {
        return;
    };

    // What a team's Verdaccio holds: their packages, published with npm 11.
    let token = verdaccio.add_user("alice", ALICE_PASSWORD);
    let team = Project::new(ClientKind::Npm);
    team.configure(&verdaccio.url, &token);
    publish_to_verdaccio(&team, "@acme/lib", "1.0.0", &[]);
    publish_to_verdaccio(&team, "@acme/lib", "1.1.0", &[]);
    publish_to_verdaccio(&team, "@acme/lib", "2.0.0-beta.1", &["--tag", "next"]);
    team.run(&["deprecate", "@acme/lib@1.0.0", "use 1.1"]);
    team.run(&["dist-tag", "add", "@acme/lib@1.0.0", "legacy"]);
    publish_to_verdaccio(&team, "@acme/tool", "1.0.0", &[]);
    publish_to_verdaccio(&team, "@acme/tool", "1.1.0", &[]);
    publish_to_verdaccio(&team, "plain-pkg", "0.1.0", &[]);
    // And a public package it cached for them.
    let consumer = Project::new(ClientKind::Npm);
    consumer.configure(&verdaccio.url, &token);
    consumer.install(&[("cached-dep", "1.0.0")]);
    let cached_file = verdaccio.storage.join("cached-dep/cached-dep-1.0.0.tgz");
    assert!(
        eventually(Duration::from_secs(10), || cached_file.is_file()),
        "Verdaccio caches the tarball"
    );
    let verdaccio_doc: Value =
        serde_json::from_slice(&std::fs::read(verdaccio.storage.join("@acme/lib/package.json")).expect("doc"))
            .expect("json");
    verdaccio.stop();

    // Users Verdaccio accepts in other hash forms (made with OpenSSL), one it can't verify,
    // one whose name is not a name here.
    let mut htpasswd = std::fs::read_to_string(&verdaccio.htpasswd).expect("htpasswd");
    htpasswd.push_str(
        "bob:{SHA}L55TUjtiq8FBorTWAZ0jy6g129A=\ncarol:$apr1$Q3x9$4flnJQfe3uNW.z9kevnXv1\n\
         eve:$6$salt$unverifiable\nDave:{PLAIN}whatever-1\n",
    );
    std::fs::write(&verdaccio.htpasswd, htpasswd).expect("htpasswd");

    // Damage the first run must name without losing the rest: a tarball that no longer
    // matches its recorded integrity, and a package document that is not JSON.
    let plain = verdaccio.storage.join("plain-pkg/plain-pkg-0.1.0.tgz");
    let plain_bytes = std::fs::read(&plain).expect("plain tarball");
    let mut damaged = plain_bytes.clone();
    damaged.push(0);
    std::fs::write(&plain, &damaged).expect("damage");
    let broken = verdaccio.storage.join("@acme/broken");
    std::fs::create_dir_all(&broken).expect("dir");
    std::fs::write(broken.join("package.json"), "{\"name\": \"@acme/broken\", ").expect("broken doc");

    let server = TestServer::start();
    let advisories = tempfile::tempdir().expect("tempdir");
    let advisory = malware_advisory(advisories.path(), "@acme/tool", "1.1.0");
    let out = server.cli(&["advisories", "import", advisory.to_str().expect("utf-8")], "");
    assert!(out.status.success(), "{}", output_text(&out));

    // First run, the server running: everything sound comes in, the rest is named.
    let (ok, stdout, stderr) = import(&server, &verdaccio, &["--owner", "alice"]);
    assert!(!ok, "a failure exits non-zero:\n{stdout}\n{stderr}");
    assert!(stderr.contains("created registry acme"), "{stderr}");
    assert!(
        stdout.contains(
            "failed\tplain-pkg@0.1.0\tthe tarball plain-pkg-0.1.0.tgz does not match its manifest: integrity mismatch"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("failed\t@acme/broken\tpackage.json is not JSON"),
        "{stdout}"
    );
    let refused = stdout
        .lines()
        .find(|l| l.starts_with("refused\t@acme/tool@1.1.0\t"))
        .unwrap_or_else(|| panic!("the malware version is refused:\n{stdout}"));
    assert!(refused.contains("MAL-2026-0001"), "{refused}");
    assert!(
        stdout.contains("reset\teve\tits password hash is in a form this server cannot verify"),
        "{stdout}"
    );
    assert!(stdout.contains("reset\tDave\tuser names here are"), "{stdout}");
    assert!(
        stdout.contains("1 cached packages of upstreams skipped, 1 cached versions in all"),
        "{stdout}"
    );
    assert!(stdout.contains("users: 4 created (2 re-hashed"), "{stdout}");

    let alice = server.login("acme", "alice", ALICE_PASSWORD);
    assert!(
        packument(&server, "acme", &alice, "plain-pkg").is_none(),
        "nothing of a damaged version"
    );
    assert!(
        packument(&server, "acme", &alice, "cached-dep").is_none(),
        "the cache waits for --include-cache"
    );

    // The packages as they were: versions, tags, times, the deprecation, the bytes.
    let lib = packument(&server, "acme", &alice, "@acme/lib").expect("@acme/lib");
    assert_eq!(
        lib["dist-tags"],
        json!({"latest": "1.1.0", "next": "2.0.0-beta.1", "legacy": "1.0.0"})
    );
    for version in ["1.0.0", "1.1.0", "2.0.0-beta.1"] {
        assert_eq!(
            lib["time"][version], verdaccio_doc["time"][version],
            "time of {version}"
        );
        let bytes = tarball_from(&server, &alice, &lib, version);
        let stored = std::fs::read(verdaccio.storage.join(format!("@acme/lib/lib-{version}.tgz"))).expect("stored");
        assert_eq!(sha512_hex(&bytes), sha512_hex(&stored), "the bytes of {version}");
    }
    assert_eq!(lib["versions"]["1.0.0"]["deprecated"], "use 1.1");
    assert_eq!(
        lib["maintainers"][0]["name"], "alice",
        "--owner maintains what recorded no one"
    );
    let tool = packument(&server, "acme", &alice, "@acme/tool").expect("@acme/tool");
    assert_eq!(
        tool["dist-tags"]["latest"], "1.0.0",
        "latest falls back to what came in"
    );
    assert!(tool["versions"].get("1.1.0").is_none());

    // Users log in with the passwords they had; weak hashes are replaced on the way.
    for (user, password) in [("bob", "correct horse"), ("carol", "correct horse")] {
        server.login("acme", user, password);
        server.login("acme", user, password);
    }
    assert_eq!(
        server
            .log()
            .matches("imported password re-hashed with argon2id")
            .count(),
        2,
        "once each"
    );
    let wrong = http()
        .put(format!("{}-/user/org.couchdb.user:bob", server.registry_url("acme")))
        .json(&json!({"name": "bob", "password": "wrong horse"}))
        .send()
        .expect("login");
    assert_eq!(wrong.status().as_u16(), 401);

    // Repaired, run again with the cache: only what is missing comes in.
    std::fs::write(&plain, &plain_bytes).expect("repair");
    std::fs::remove_dir_all(&broken).expect("remove broken");
    let (ok, stdout, stderr) = import(&server, &verdaccio, &["--include-cache"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "4 packages: 2 versions imported (0 held for review), 4 already here, 1 refused by policy, 0 failed"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("users: 0 created"), "{stdout}");
    let plain_doc = packument(&server, "acme", &alice, "plain-pkg").expect("plain-pkg");
    assert_eq!(
        sha512_hex(&tarball_from(&server, &alice, &plain_doc, "0.1.0")),
        sha512_hex(&plain_bytes)
    );
    let cached = packument(&server, "acme", &alice, "cached-dep").expect("cached-dep");
    assert_eq!(
        sha512_hex(&tarball_from(&server, &alice, &cached, "1.0.0")),
        sha512_hex(&cached_tarball)
    );

    // And a real client installs from it.
    let app = Project::new(ClientKind::Npm);
    app.configure(&server.registry_url("acme"), &alice);
    app.install(&[("@acme/lib", "^1.0.0"), ("@acme/tool", "^1.0.0")]);
    assert_eq!(
        app.read_installed("@acme/lib", "index.js"),
        "module.exports = '@acme/lib@1.1.0';\n"
    );
    assert_eq!(
        app.read_installed("@acme/tool", "index.js"),
        "module.exports = '@acme/tool@1.0.0';\n"
    );
}

#[test]
fn an_import_from_a_folder_that_is_not_verdaccios_changes_nothing() {
    let server = TestServer::start();
    // An import that fails, and what it said.
    let refused = |storage: &str, extra: &[&str]| {
        let mut args = vec!["import", "verdaccio", storage, "--registry", "acme"];
        args.extend_from_slice(extra);
        let out = server.cli(&args, "");
        let text = output_text(&out);
        assert!(!out.status.success(), "{text}");
        text
    };
    let empty = tempfile::tempdir().expect("tempdir");
    let storage = empty.path().to_str().expect("utf-8");
    let text = refused(storage, &[]);
    assert!(text.contains("is not a Verdaccio storage folder"), "{text}");
    std::fs::write(empty.path().join(".verdaccio-db.json"), "[1, 2").expect("db");
    let text = refused(storage, &[]);
    assert!(text.contains("is not Verdaccio's database"), "{text}");
    let text = refused("/nonexistent/storage", &["--owner", "nobody"]);
    assert!(text.contains("cannot read /nonexistent/storage"), "{text}");
    let admin = server.admin_token();
    let registries = http()
        .get(format!("{}/-/api/v1/registries", server.base))
        .bearer_auth(&admin)
        .send()
        .expect("registries")
        .text()
        .expect("text");
    assert!(
        !registries.contains("\"acme\""),
        "no registry was created: {registries}"
    );
}
