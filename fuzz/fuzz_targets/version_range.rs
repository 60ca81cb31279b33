//! npm version ranges (`gatehouse_policy::range`): never a panic; a parsed range
//! prints as its trimmed text and reads back as the same range; `*` holds every
//! version npm reads, and a version alone is a range holding it.
#![no_main]

use gatehouse_policy::range::{VersionRange, parse_version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    // `range\nversion`
    let (text, version) = data.split_once('\n').unwrap_or((data, "1.2.3"));
    if let Some(parsed) = parse_version(version) {
        assert!(VersionRange::any().contains(version), "{parsed:?}");
    }
    let Ok(range) = VersionRange::parse(text) else {
        return;
    };
    let again = VersionRange::parse(&range.to_string()).expect("a printed range parses");
    assert_eq!(again, range);
    assert_eq!(again.contains(version), range.contains(version));
    // A version is in the range that names it alone.
    if parse_version(text).is_some() {
        assert!(range.contains(text), "{range:?}");
    }
    if parse_version(version).is_none() {
        assert!(!range.contains(version));
    }
});
