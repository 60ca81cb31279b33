//! Policy documents (TOML): never a panic; a policy reads back from its own source
//! the same; its durations print and read back; and whatever it says, the evaluator
//! decides every version of a package, with a verdict its findings explain.
#![no_main]

use std::collections::HashMap;

use gatehouse_policy::document::{Age, Policy};
use gatehouse_policy::evaluate::{Context, Subject, TarballFacts, Verdict, evaluate};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

fuzz_target!(|data: &str| {
    // `name\nlicense\ntoml`: the package judged, its license, then the policy.
    let mut lines = data.splitn(3, '\n');
    let (Some(name), Some(license), Some(toml)) = (lines.next(), lines.next(), lines.next()) else {
        let _ = Policy::parse(data);
        let _ = Age::parse(data).map(|age| assert_eq!(Age::parse(&age.to_string()).ok(), Some(age)));
        return;
    };
    let Ok(policy) = Policy::parse(toml) else {
        return;
    };
    let again = Policy::parse(&policy.source).expect("a policy's source parses");
    assert_eq!(format!("{again:?}"), format!("{policy:?}"));
    if let Some(age) = &policy.release_age {
        assert_eq!(Age::parse(&age.min.to_string()).ok(), Some(age.min));
    }
    let manifests: Vec<Map<String, Value>> = [
        json!({"name": name, "version": "1.0.0", "license": license}),
        json!({"name": name, "version": "1.1.0-rc.1", "license": license,
               "scripts": {"postinstall": "node x"}, "dist": {"attestations": {}}}),
        json!({"name": name, "version": "2.0.0", "licenses": [{"type": license}], "gypfile": true}),
    ]
    .into_iter()
    .filter_map(|m| m.as_object().cloned())
    .collect();
    let facts = TarballFacts {
        gyp: true,
        mismatch: Some("version".into()),
    };
    let subjects: Vec<Subject<'_>> = manifests
        .iter()
        .enumerate()
        .map(|(i, manifest)| Subject {
            version: manifest.get("version").and_then(Value::as_str).unwrap_or("0.0.0"),
            manifest,
            published_at: Some(1_700_000_000_000 + i as i64 * 86_400_000),
            published_here: i == 0,
            held: i == 1,
            tarball: (i == 2).then_some(&facts),
        })
        .collect();
    let reviews = HashMap::new();
    let ctx = Context {
        now: 1_700_000_000_000 + 3 * 86_400_000,
        advisories: &[],
        exceptions: &[],
        reviews: &reviews,
    };
    let decisions = evaluate(&policy, name, &subjects, &ctx);
    assert_eq!(decisions.len(), subjects.len());
    for (decision, subject) in decisions.iter().zip(&subjects) {
        let decided = decision.decisive().map_or(Verdict::Allow, |f| f.verdict);
        assert_eq!(decision.verdict, decided, "{decision:?}");
        assert!(decision.would() >= decision.verdict);
        let _ = decision.explain("default", name, subject.version);
    }
});
