//! What the firewall's tests share: the OSV fixtures, a policy as the config file
//! holds it, lockfiles and zips made in the test, an upstream version with a script.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::fake_upstream::FakeUpstream;

/// `crates/gatehouse-policy/tests/fixtures/osv` (real GHSA and MAL records).
pub fn osv_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../gatehouse-policy/tests/fixtures/osv")
}

/// A policy document as the config file holds it: its tables under
/// `[registries.NAME.policy]`.
pub fn policy_in_config(registry: &str, policy: &str) -> String {
    let prefix = format!("registries.{registry}.policy");
    let mut out = format!("[{prefix}]\n");
    for line in policy.lines() {
        let line = match line.strip_prefix("[[") {
            Some(rest) => format!("[[{prefix}.{rest}"),
            None => match line.strip_prefix('[') {
                Some(rest) => format!("[{prefix}.{rest}"),
                None => line.to_owned(),
            },
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A package-lock.json (v3) pinning `pins`.
pub fn package_lock(pins: &[(&str, &str)]) -> String {
    let packages: serde_json::Map<String, Value> = std::iter::once((String::new(), json!({"name": "app"})))
        .chain(
            pins.iter()
                .map(|(n, v)| (format!("node_modules/{n}"), json!({"version": v}))),
        )
        .collect();
    json!({"name": "app", "lockfileVersion": 3, "packages": packages}).to_string()
}

/// A zip with `(name, bytes)` entries.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .expect("entry");
        std::io::Write::write_all(&mut zip, bytes).expect("write");
    }
    zip.finish().expect("zip").into_inner()
}

/// A tarball whose package.json declares a postinstall script, published upstream.
pub fn publish_with_postinstall(fake: &FakeUpstream, name: &str, version: &str) {
    let manifest = json!({ "name": name, "version": version, "scripts": {"postinstall": "node setup.js"} });
    let bytes = super::tarball(&[
        ("package/package.json", manifest.to_string().as_bytes()),
        ("package/setup.js", b"console.log('hi')\n"),
    ]);
    fake.publish_bytes(name, version, &bytes, &bytes);
    fake.edit(name, |doc| {
        doc["versions"][version]["scripts"] = json!({"postinstall": "node setup.js"});
    });
}
