//! `PUT /{name}` bodies. npm sends three kinds to the same URL: a publish (with a
//! `.tgz` attachment), a whole-document metadata update (deprecate) and a star.
//! This module classifies and validates them; it does no IO.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::dist_tag::DistTag;
use super::integrity::{self, Digests};
use super::name::PackageName;
use super::version::Version;

#[derive(Debug)]
pub enum PackageWrite {
    Publish(Box<Publish>),
    /// A whole packument sent back (deprecate / undeprecate, unpublish of one version).
    Document(Document),
    /// `{_id, _rev, maintainers}`: `npm owner add/rm`.
    Owners(Vec<String>),
    /// `{_id, _rev, users}`: `npm star`.
    Star,
}

#[derive(Debug)]
pub struct Publish {
    pub name: PackageName,
    pub version: Version,
    /// The version manifest as sent, to be cleaned up by admission.
    pub manifest: Map<String, Value>,
    pub tags: Vec<DistTag>,
    pub tarball: Bytes,
    pub digests: Digests,
    /// The Sigstore bundle of `npm publish --provenance` (JSON), unverified.
    pub provenance: Option<Bytes>,
}

#[derive(Debug)]
pub struct Document {
    /// Version → `deprecated` message as sent (`None` when absent or empty).
    pub deprecations: Vec<(String, Option<String>)>,
    pub dist_tags: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    #[error("request body is not valid JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Integrity(String),
}

fn invalid(message: impl Into<String>) -> PublishError {
    PublishError::Invalid(message.into())
}

/// Parses and checks a `PUT /{name}` body sent for `url_name`. CPU-bound for large
/// publishes (base64 + hashing): run it off the async runtime.
pub fn parse(url_name: &PackageName, body: &[u8]) -> Result<PackageWrite, PublishError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| PublishError::Json(e.to_string()))?;
    let Value::Object(mut doc) = value else {
        return Err(invalid("request body must be a JSON object"));
    };
    if let Some(id) = doc.get("_id").and_then(Value::as_str)
        && id != url_name.as_str()
    {
        return Err(invalid(format!(
            "document _id \"{id}\" does not match the package name \"{url_name}\" in the URL"
        )));
    }
    let has_attachments = doc
        .get("_attachments")
        .and_then(Value::as_object)
        .is_some_and(|a| !a.is_empty());
    if has_attachments {
        return parse_publish(url_name, &mut doc).map(|p| PackageWrite::Publish(Box::new(p)));
    }
    if doc.contains_key("versions") {
        return parse_document(&doc).map(PackageWrite::Document);
    }
    if let Some(maintainers) = doc.get("maintainers") {
        return parse_owners(maintainers).map(PackageWrite::Owners);
    }
    if doc.contains_key("users") {
        return Ok(PackageWrite::Star);
    }
    Err(invalid("request body has no versions, attachments or maintainers"))
}

fn parse_publish(url_name: &PackageName, doc: &mut Map<String, Value>) -> Result<Publish, PublishError> {
    let body_name = doc
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("body has no \"name\""))?;
    if body_name != url_name.as_str() {
        return Err(invalid(format!(
            "package name \"{body_name}\" in the body does not match \"{url_name}\" in the URL"
        )));
    }
    let Some(Value::Object(versions)) = doc.remove("versions") else {
        return Err(invalid("body has no \"versions\" object"));
    };
    if versions.len() != 1 {
        return Err(invalid(format!(
            "a publish must carry exactly one version, this one has {}",
            versions.len()
        )));
    }
    let Some((version_key, Value::Object(manifest))) = versions.into_iter().next() else {
        return Err(invalid("the version entry must be a JSON object"));
    };
    let version = Version::parse(&version_key).map_err(|e| invalid(e.to_string()))?;
    match manifest.get("name").and_then(Value::as_str) {
        Some(n) if n == url_name.as_str() => {}
        other => {
            return Err(invalid(format!(
                "manifest name {} does not match the package name \"{url_name}\"",
                quoted_or_missing(other)
            )));
        }
    }
    match manifest.get("version").and_then(Value::as_str) {
        Some(v) if v == version.as_str() => {}
        other => {
            return Err(invalid(format!(
                "manifest version {} does not match the version key \"{version}\"",
                quoted_or_missing(other)
            )));
        }
    }
    let tags = parse_publish_tags(doc.get("dist-tags"), &version)?;
    let (tarball, provenance) = take_attachments(doc, url_name, &version)?;
    let digests = Digests::of(&tarball);
    let dist = manifest.get("dist").and_then(Value::as_object);
    let declared_integrity = dist.and_then(|d| d.get("integrity")).and_then(Value::as_str);
    let declared_shasum = dist.and_then(|d| d.get("shasum")).and_then(Value::as_str);
    integrity::verify_declared(&digests, declared_integrity, declared_shasum)
        .map_err(|e| PublishError::Integrity(e.to_string()))?;
    Ok(Publish {
        name: url_name.clone(),
        version,
        manifest,
        tags,
        tarball,
        digests,
        provenance,
    })
}

/// A string field for an error message: `"value"`, or `(missing)`.
fn quoted_or_missing(value: Option<&str>) -> String {
    value.map_or_else(|| "(missing)".to_owned(), |v| format!("{v:?}"))
}

/// The tags a publish asks for: each must point at the published version.
fn parse_publish_tags(raw: Option<&Value>, version: &Version) -> Result<Vec<DistTag>, PublishError> {
    let Some(raw) = raw else {
        return Ok(vec![DistTag::latest()]);
    };
    let tags = raw
        .as_object()
        .ok_or_else(|| invalid("\"dist-tags\" must be an object"))?;
    let mut out = Vec::with_capacity(tags.len());
    for (tag, target) in tags {
        let tag = DistTag::parse(tag).map_err(|e| invalid(e.to_string()))?;
        if target.as_str() != Some(version.as_str()) {
            return Err(invalid(format!(
                "dist-tag \"{tag}\" must point at the published version {version}"
            )));
        }
        out.push(tag);
    }
    if out.is_empty() {
        out.push(DistTag::latest());
    }
    Ok(out)
}

/// Finds the single `.tgz` attachment, decodes it and checks its declared length,
/// and the `.sigstore` provenance bundle that may ride along (its `data` is the
/// bundle's JSON as text, not base64); anything else is refused.
fn take_attachments(
    doc: &mut Map<String, Value>,
    name: &PackageName,
    version: &Version,
) -> Result<(Bytes, Option<Bytes>), PublishError> {
    let Some(Value::Object(attachments)) = doc.remove("_attachments") else {
        return Err(invalid("\"_attachments\" must be an object"));
    };
    let expected_key = format!("{name}-{version}.tgz");
    let bundle_key = format!("{name}-{version}.sigstore");
    let mut tarball = None;
    let mut provenance = None;
    for (key, attachment) in attachments {
        if key == bundle_key {
            let data = attachment
                .get("data")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("provenance attachment \"{bundle_key}\" has no \"data\" string")))?;
            provenance = Some(Bytes::from(data.to_owned()));
            continue;
        }
        if key != expected_key {
            return Err(invalid(format!(
                "unexpected attachment \"{key}\": a publish of {name}@{version} carries \"{expected_key}\" and may carry \"{bundle_key}\""
            )));
        }
        tarball = Some(attachment);
    }
    let attachment = tarball.ok_or_else(|| invalid(format!("missing tarball attachment \"{expected_key}\"")))?;
    let data = attachment
        .get("data")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("tarball attachment has no \"data\" string"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| invalid("tarball attachment data is not valid base64"))?;
    if bytes.is_empty() {
        return Err(invalid("tarball attachment is empty"));
    }
    if let Some(length) = attachment.get("length") {
        let declared = length
            .as_u64()
            .ok_or_else(|| invalid("attachment \"length\" must be a number"))?;
        if declared != bytes.len() as u64 {
            return Err(invalid(format!(
                "attachment length {declared} does not match the {} bytes of data",
                bytes.len()
            )));
        }
    }
    Ok((Bytes::from(bytes), provenance))
}

fn parse_document(doc: &Map<String, Value>) -> Result<Document, PublishError> {
    let versions = doc
        .get("versions")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("\"versions\" must be an object"))?;
    let deprecations = versions
        .iter()
        .map(|(version, manifest)| {
            let message = manifest
                .get("deprecated")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .map(str::to_owned);
            (version.clone(), message)
        })
        .collect();
    let dist_tags = doc
        .get("dist-tags")
        .and_then(Value::as_object)
        .map(|tags| {
            tags.iter()
                .filter_map(|(tag, v)| v.as_str().map(|v| (tag.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Document {
        deprecations,
        dist_tags,
    })
}

fn parse_owners(maintainers: &Value) -> Result<Vec<String>, PublishError> {
    let list = maintainers
        .as_array()
        .ok_or_else(|| invalid("\"maintainers\" must be an array"))?;
    list.iter()
        .map(|m| {
            m.get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| invalid("each maintainer needs a \"name\""))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn name() -> PackageName {
        PackageName::parse("@acme/lib").expect("valid")
    }

    fn body(tarball: &[u8], mutate: impl FnOnce(&mut Value)) -> Vec<u8> {
        let digests = Digests::of(tarball);
        let mut doc = json!({
            "_id": "@acme/lib",
            "name": "@acme/lib",
            "dist-tags": {"latest": "1.0.0"},
            "versions": {"1.0.0": {
                "name": "@acme/lib", "version": "1.0.0",
                "dist": {"integrity": digests.sri_sha512(), "shasum": digests.shasum_hex()}
            }},
            "_attachments": {"@acme/lib-1.0.0.tgz": {
                "content_type": "application/octet-stream",
                "data": base64::engine::general_purpose::STANDARD.encode(tarball),
                "length": tarball.len()
            }}
        });
        mutate(&mut doc);
        serde_json::to_vec(&doc).expect("json")
    }

    fn error_of(body: &[u8]) -> String {
        match parse(&name(), body) {
            Err(e) => e.to_string(),
            Ok(other) => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_publish_is_accepted() {
        let PackageWrite::Publish(p) = parse(&name(), &body(b"tgz", |_| {})).expect("valid") else {
            panic!("not a publish")
        };
        assert_eq!(p.version.as_str(), "1.0.0");
        assert_eq!(&p.tarball[..], b"tgz");
        assert_eq!(p.tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(), ["latest"]);
    }

    #[test]
    fn bad_bodies_get_readable_errors() {
        assert!(error_of(b"{not json").contains("not valid JSON"));
        assert!(error_of(b"[]").contains("JSON object"));
        let e = error_of(&body(b"tgz", |d| d["name"] = json!("@acme/other")));
        assert!(e.contains("does not match"), "{e}");
        let e = error_of(&body(b"tgz", |d| d["versions"]["1.0.0"]["version"] = json!("2.0.0")));
        assert!(e.contains("manifest version \"2.0.0\" does not match"), "{e}");
        let e = error_of(&body(b"tgz", |d| {
            d["versions"]["1.0.0"].as_object_mut().expect("object").remove("name");
        }));
        assert!(e.contains("manifest name (missing) does not match"), "{e}");
        let e = error_of(&body(b"tgz", |d| {
            d["_attachments"]["@acme/lib-1.0.0.tgz"]["data"] = json!("***")
        }));
        assert!(e.contains("base64"), "{e}");
        let e = error_of(&body(b"tgz", |d| {
            d["_attachments"]["@acme/lib-1.0.0.tgz"]["length"] = json!(99)
        }));
        assert!(e.contains("length 99"), "{e}");
        let e = error_of(&body(b"tgz", |d| d["_attachments"]["extra.tgz"] = json!({"data": ""})));
        assert!(e.contains("unexpected attachment"), "{e}");
        let e = error_of(&body(b"tgz", |d| {
            d["versions"]["1.0.0"]["dist"]["integrity"] = json!(Digests::of(b"other").sri_sha512())
        }));
        assert!(e.contains("integrity"), "{e}");
        let e = error_of(&body(b"tgz", |d| d["dist-tags"] = json!({"1.x": "1.0.0"})));
        assert!(e.contains("SemVer range"), "{e}");
        let e = error_of(&body(b"tgz", |d| {
            d["versions"]["2.0.0"] = d["versions"]["1.0.0"].clone();
        }));
        assert!(e.contains("exactly one version"), "{e}");
        let e = error_of(&body(b"tgz", |d| {
            let v = d["versions"]["1.0.0"].take();
            d["versions"] = json!({"not-semver": v});
        }));
        assert!(!e.is_empty());
    }

    #[test]
    fn metadata_updates_are_classified() {
        let doc =
            json!({"_id": "@acme/lib", "versions": {"1.0.0": {"deprecated": "old"}, "1.1.0": {"deprecated": ""}}});
        let PackageWrite::Document(d) = parse(&name(), doc.to_string().as_bytes()).expect("valid") else {
            panic!("not a document")
        };
        assert_eq!(
            d.deprecations,
            [("1.0.0".to_owned(), Some("old".to_owned())), ("1.1.0".to_owned(), None)]
        );
        let owners = json!({"_id": "@acme/lib", "_rev": "1-x", "maintainers": [{"name": "bob"}]});
        assert!(matches!(parse(&name(), owners.to_string().as_bytes()), Ok(PackageWrite::Owners(o)) if o == ["bob"]));
    }
}
