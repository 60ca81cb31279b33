//! The small npm parsers: package names (plain and from a request path), versions
//! and dist-tags. Whatever parses prints back to itself and parses again the same.
#![no_main]

use gatehouse_npm::dist_tag::DistTag;
use gatehouse_npm::name::PackageName;
use gatehouse_npm::version::Version;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(name) = PackageName::parse(text) {
        assert_eq!(name.to_string(), text);
        assert_eq!(name.as_str(), text);
        let _ = name.check_new();
        match name.scope() {
            Some(scope) => assert_eq!(format!("@{scope}/{}", name.basename()), text),
            None => assert_eq!(name.basename(), text),
        }
        // The URL form of a name leads back to it.
        assert_eq!(PackageName::from_path_segment(&name.escaped()).as_ref(), Ok(&name));
    }
    if let Ok(name) = PackageName::from_path_segment(text) {
        assert_eq!(PackageName::parse(name.as_str()).as_ref(), Ok(&name));
    }
    if let Ok(version) = Version::parse(text) {
        assert_eq!(version.to_string(), text);
        let again = Version::parse(&version.to_string()).expect("a printed version parses");
        assert_eq!(again, version);
        assert!(version.same_release(&again));
        assert!(text.starts_with(version.release_key()));
        assert_eq!(version.is_prerelease(), !version.semver().pre.is_empty());
        // A version is never a dist-tag (npm would read the tag as a version).
        assert!(DistTag::parse(text).is_err());
    }
    if let Ok(tag) = DistTag::parse(text) {
        assert_eq!(tag.to_string(), text);
        assert_eq!(DistTag::parse(tag.as_str()).as_ref(), Ok(&tag));
    }
});
