//! Taking versions a registry does not serve out of a packument, as clients need it:
//! gone from `versions` and `time`, dist-tags moved to a served version, and listed
//! in npm's `policyRestrictions` so that npm picks another version and, when nothing
//! fits, prints why.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// At most this many reasons in `policyRestrictions.message`; npm prints it whole.
const MAX_LISTED: usize = 10;

/// A dist-tag that pointed at a withheld version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagMove {
    pub tag: String,
    pub from: String,
    /// `None`: no served version of its channel is left, so the tag is gone.
    pub to: Option<String>,
}

/// Removes `withheld` (version → the sentence saying why) from a full packument.
///
/// A tag moves to the highest served version below the one it named on the same
/// channel (stable stays stable; a prerelease tag stays on its prerelease
/// identifier, `next` on `-beta.N` to another `-beta`), else to the highest served
/// version of that channel, else it is dropped. Never "newest by date": a backport
/// would become `latest`.
pub fn withhold(full: &mut Value, withheld: &BTreeMap<String, String>) -> Vec<TagMove> {
    let Value::Object(doc) = full else {
        return Vec::new();
    };
    let mut restricted = Map::new();
    if let Some(Value::Object(versions)) = doc.get_mut("versions") {
        for version in withheld.keys() {
            if let Some(manifest) = versions.remove(version) {
                restricted.insert(version.clone(), manifest);
            }
        }
    }
    if restricted.is_empty() {
        return Vec::new();
    }
    if let Some(Value::Object(time)) = doc.get_mut("time") {
        for version in restricted.keys() {
            time.remove(version);
        }
    }
    let served: Vec<semver::Version> = doc
        .get("versions")
        .and_then(Value::as_object)
        .map(|v| v.keys().filter_map(|k| semver::Version::parse(k).ok()).collect())
        .unwrap_or_default();

    let mut moves = Vec::new();
    if let Some(Value::Object(tags)) = doc.get_mut("dist-tags") {
        let stale: Vec<(String, String)> = tags
            .iter()
            .filter_map(|(tag, v)| v.as_str().map(|v| (tag.clone(), v.to_owned())))
            .filter(|(_, v)| restricted.contains_key(v))
            .collect();
        for (tag, from) in stale {
            let to = semver::Version::parse(&from)
                .ok()
                .and_then(|original| replacement(&original, &served));
            match &to {
                Some(to) => tags.insert(tag.clone(), Value::String(to.to_string())),
                None => tags.remove(&tag),
            };
            moves.push(TagMove {
                tag,
                from,
                to: to.map(|v| v.to_string()),
            });
        }
    }

    let mut message: Vec<String> = withheld
        .iter()
        .filter(|(v, _)| restricted.contains_key(*v))
        .take(MAX_LISTED)
        .map(|(_, why)| why.clone())
        .collect();
    if restricted.len() > MAX_LISTED {
        message.push(format!("and {} more versions", restricted.len() - MAX_LISTED));
    }
    doc.insert(
        "policyRestrictions".into(),
        json!({ "versions": restricted, "message": message.join("\n") }),
    );
    moves
}

/// The prerelease channel of a version: its first identifier (`beta` in
/// `2.0.0-beta.3`), or `None` for a stable release.
fn channel(v: &semver::Version) -> Option<String> {
    (!v.pre.is_empty()).then(|| v.pre.as_str().split('.').next().unwrap_or_default().to_owned())
}

fn replacement(original: &semver::Version, served: &[semver::Version]) -> Option<semver::Version> {
    let wanted = channel(original);
    let same_channel = || served.iter().filter(|v| channel(v) == wanted);
    same_channel()
        .filter(|v| *v < original)
        .max()
        .or_else(|| same_channel().max())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(versions: &[&str], tags: Value) -> Value {
        let versions: Map<String, Value> = versions
            .iter()
            .map(|v| ((*v).to_owned(), json!({"name": "p", "version": v})))
            .collect();
        let time: Map<String, Value> = versions
            .keys()
            .map(|v| (v.clone(), json!("2020-01-01T00:00:00.000Z")))
            .collect();
        json!({"name": "p", "dist-tags": tags, "versions": versions, "time": time})
    }

    fn withheld(versions: &[&str]) -> BTreeMap<String, String> {
        versions
            .iter()
            .map(|v| ((*v).to_owned(), format!("p@{v} is blocked")))
            .collect()
    }

    #[test]
    fn latest_moves_to_the_highest_served_stable_version_below_it() {
        let mut full = doc(
            &["3.9.0", "4.0.0", "4.1.0", "4.2.0-beta.1", "3.10.0"],
            json!({"latest": "4.1.0", "next": "4.2.0-beta.1"}),
        );
        let moves = withhold(&mut full, &withheld(&["4.1.0"]));
        assert_eq!(
            full["dist-tags"]["latest"], "4.0.0",
            "not the prerelease, not the 3.x backport"
        );
        assert_eq!(full["dist-tags"]["next"], "4.2.0-beta.1");
        assert_eq!(
            moves,
            [TagMove {
                tag: "latest".into(),
                from: "4.1.0".into(),
                to: Some("4.0.0".into())
            }]
        );
        assert!(full["versions"].get("4.1.0").is_none() && full["time"].get("4.1.0").is_none());
        assert_eq!(full["policyRestrictions"]["versions"]["4.1.0"]["version"], "4.1.0");
        assert_eq!(full["policyRestrictions"]["message"], "p@4.1.0 is blocked");
    }

    #[test]
    fn with_nothing_below_a_tag_takes_the_highest_of_its_channel_or_is_dropped() {
        let mut full = doc(
            &["1.0.0", "1.1.0", "2.0.0-rc.1", "2.0.0-rc.2"],
            json!({"latest": "1.0.0", "next": "2.0.0-rc.1"}),
        );
        withhold(&mut full, &withheld(&["1.0.0", "2.0.0-rc.1"]));
        assert_eq!(full["dist-tags"]["latest"], "1.1.0");
        assert_eq!(full["dist-tags"]["next"], "2.0.0-rc.2");

        let mut full = doc(&["1.0.0", "2.0.0-rc.1"], json!({"latest": "1.0.0"}));
        let moves = withhold(&mut full, &withheld(&["1.0.0"]));
        assert!(
            full["dist-tags"].get("latest").is_none(),
            "a stable tag never moves to a prerelease"
        );
        assert_eq!(moves[0].to, None);
    }

    #[test]
    fn nothing_withheld_changes_nothing() {
        let mut full = doc(&["1.0.0"], json!({"latest": "1.0.0"}));
        let before = full.clone();
        assert!(withhold(&mut full, &withheld(&["9.9.9"])).is_empty());
        assert_eq!(full, before);
    }
}
