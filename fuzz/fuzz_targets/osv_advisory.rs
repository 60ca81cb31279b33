//! OSV advisory records and imports (a record, an array, a zip): never a panic, and
//! an advisory's `vulnerable_versions` and `patched_versions` say what `affects`
//! says, version by version, for the versions the record itself names.
#![no_main]

use gatehouse_policy::advisory::{self, Advisory, End, NOTHING_PATCHED, Parsed, import};
use gatehouse_policy::range::VersionRange;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Advisory(advisory)) = advisory::parse_osv(data) {
        check(&advisory);
    }
    if let Ok(import) = import::import_bytes(data, "fuzz") {
        assert!(import.advisories.len() + import.skipped.len() + import.ignored <= import.records);
        let _ = advisory::dedupe_aliases(import.advisories);
    }
});

fn check(advisory: &Advisory) {
    let json = serde_json::to_string(advisory).expect("an advisory serializes");
    let back: Advisory = serde_json::from_str(&json).expect("and reads back");
    assert_eq!(&back, advisory);
    for affected in &advisory.affected {
        let package = affected.package.as_str();
        let vulnerable = advisory.vulnerable_versions(package);
        let vulnerable = VersionRange::parse(&vulnerable).expect("vulnerable_versions is an npm range");
        let patched_text = advisory.patched_versions(package);
        let patched = VersionRange::parse(&patched_text).expect("patched_versions is an npm range");
        // npm's "nothing patched" text holds `0.0.0-0` once prereleases count.
        let nothing_patched = patched_text == NOTHING_PATCHED;
        let mut probes: Vec<&str> = affected.versions.iter().map(String::as_str).collect();
        for span in &affected.spans {
            probes.extend(span.introduced.as_deref());
            match &span.end {
                Some(End::Fixed(v) | End::LastAffected(v)) => probes.push(v),
                None => {}
            }
        }
        probes.extend(["0.0.0", "0.0.0-0", "1.0.0", "999999.0.0"]);
        for version in probes {
            let affects = advisory.affects(package, version);
            assert_eq!(
                vulnerable.contains(version),
                affects,
                "{version} in {vulnerable:?}, affected {affects}: {affected:?}"
            );
            if !nothing_patched {
                assert!(
                    !(affects && patched.contains(version)),
                    "{version} affected and patched ({patched:?})"
                );
            }
        }
    }
}
