//! `PUT /{name}` bodies (`gatehouse_npm::publish`): never a panic. A publish that
//! passes names the URL's package and the manifest's version, carries tags, digests
//! of its own tarball; that tarball then goes through inspection as admission does.
//!
//! The first byte's low bit asks the harness to write the attachments' real digests
//! into every `dist`, so the fuzzer gets past the integrity check.
#![no_main]

use base64::Engine as _;
use gatehouse_npm::integrity::Digests;
use gatehouse_npm::name::PackageName;
use gatehouse_npm::publish::{self, PackageWrite};
use gatehouse_npm::tarball::{self, TarballLimits};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let url_name = value
        .as_ref()
        .and_then(|v| v.get("name").or_else(|| v.get("_id")))
        .and_then(Value::as_str)
        .and_then(|n| PackageName::parse(n).ok())
        .unwrap_or_else(|| PackageName::parse("@acme/lib").expect("a valid name"));
    let fixed;
    let body = match value {
        Some(mut value) if flags & 1 == 1 => {
            with_real_digests(&mut value);
            fixed = serde_json::to_vec(&value).expect("JSON serializes");
            &fixed[..]
        }
        _ => body,
    };
    match publish::parse(&url_name, body) {
        Ok(PackageWrite::Publish(publish)) => {
            assert_eq!(publish.name, url_name);
            assert_eq!(
                publish.manifest.get("version").and_then(Value::as_str),
                Some(publish.version.as_str())
            );
            assert!(!publish.tags.is_empty());
            assert!(!publish.tarball.is_empty());
            assert_eq!(publish.digests, Digests::of(&publish.tarball));
            let limits = TarballLimits {
                max_unpacked_bytes: 1 << 20,
                max_entries: 64,
                max_package_json_bytes: 64 * 1024,
            };
            let _ = tarball::inspect(&publish.tarball, &limits);
        }
        Ok(PackageWrite::Owners(owners)) => assert!(owners.len() < body.len()),
        Ok(PackageWrite::Document(_) | PackageWrite::Star) | Err(_) => {}
    }
});

/// Sets `dist.integrity` and `dist.shasum` of every version to the first decodable
/// attachment's digests.
fn with_real_digests(doc: &mut Value) {
    let digests = doc
        .get("_attachments")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|a| a.values())
        .filter_map(|a| a.get("data").and_then(Value::as_str))
        .find_map(|data| base64::engine::general_purpose::STANDARD.decode(data).ok())
        .map(|bytes| Digests::of(&bytes));
    let Some(digests) = digests else {
        return;
    };
    let Some(Value::Object(versions)) = doc.get_mut("versions") else {
        return;
    };
    for manifest in versions.values_mut() {
        if let Some(Value::Object(dist)) = manifest.get_mut("dist") {
            dist.insert("integrity".into(), Value::String(digests.sri_sha512()));
            dist.insert("shasum".into(), Value::String(digests.shasum_hex()));
        }
    }
}
