//! Merging a local packument with upstream ones (`gatehouse_npm::merge`), then what
//! every build does next: withholding versions and abbreviating. Never a panic;
//! local versions win, tags point at served versions, versions stay in order.
//!
//! Input: JSON documents separated by 0xFF bytes (not in any UTF-8 text); the first
//! is the local document (empty: none), the others the upstreams.
#![no_main]

use std::collections::BTreeMap;

use gatehouse_npm::merge;
use gatehouse_npm::name::PackageName;
use gatehouse_npm::packument::{abbreviate, semver_key::Key};
use gatehouse_npm::withhold::withhold;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const BASE: &str = "http://127.0.0.1:4873/r/default";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut docs = rest.split(|&b| b == 0xff);
    let local: Option<Value> = docs.next().and_then(|d| serde_json::from_slice(d).ok());
    let upstreams: Vec<Value> = docs.take(4).filter_map(|d| serde_json::from_slice(d).ok()).collect();
    let name = local
        .iter()
        .chain(&upstreams)
        .find_map(|d| d.get("name").and_then(Value::as_str))
        .and_then(|n| PackageName::parse(n).ok())
        .unwrap_or_else(|| PackageName::parse("lodash").expect("a valid name"));
    let upstream_refs: Vec<&Value> = upstreams.iter().collect();
    let local_tags = flags & 1 == 1;
    let Some(merged) = merge::merge(&name, BASE, local.as_ref().map(|d| (d, local_tags)), &upstream_refs) else {
        return;
    };
    let mut full = merged.full;
    let versions = full["versions"].as_object().expect("versions is an object");
    assert!(!versions.is_empty());
    let keys: Vec<&String> = versions.keys().collect();
    assert!(keys.windows(2).all(|w| Key::of(w[0]) <= Key::of(w[1])), "{keys:?}");
    if let Some(local_versions) = local
        .as_ref()
        .and_then(|d| d.get("versions"))
        .and_then(Value::as_object)
    {
        for (version, manifest) in local_versions {
            assert_eq!(versions.get(version), Some(manifest), "local {version} wins");
            assert!(!merged.remote.contains_key(version));
        }
    }
    for (version, remote) in &merged.remote {
        assert!(remote.source < upstreams.len());
        let manifest = versions.get(version).expect("a remote version is served");
        if let Some(tarball) = manifest.get("dist").and_then(|d| d.get("tarball")) {
            assert!(tarball.as_str().is_some_and(|t| t.starts_with(BASE)), "{tarball}");
        }
    }
    check_tags(&full);

    // Withhold every other version, as a build whose policy refuses them would.
    let withheld: BTreeMap<String, String> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| (*i + usize::from(flags >> 1)) % 2 == 0)
        .map(|(_, v)| ((*v).clone(), format!("{v} is withheld")))
        .collect();
    let _moves = withhold(&mut full, &withheld);
    let versions = full["versions"].as_object().expect("versions is still an object");
    for version in withheld.keys() {
        assert!(!versions.contains_key(version));
        assert!(full["time"].get(version).is_none());
    }
    check_tags(&full);
    let abbreviated = abbreviate(&full);
    let short = abbreviated["versions"].as_object().expect("abbreviated versions");
    assert!(short.keys().eq(versions.keys()));
});

fn check_tags(full: &Value) {
    let versions = full["versions"].as_object().expect("versions is an object");
    for (tag, version) in full["dist-tags"].as_object().expect("dist-tags is an object") {
        let version = version.as_str().expect("a tag names a version");
        assert!(versions.contains_key(version), "{tag} -> {version}");
    }
}
