//! Provenance: a Sigstore trust root and a bundle, both outside bytes (the bundle comes
//! with a publish). Input: a trust root, 0xFF, a bundle; a root that does not parse is
//! replaced by Sigstore's public-good one, so bundles are always checked against one.

#![no_main]

use gatehouse_npm::name::PackageName;
use gatehouse_npm::provenance::{self, TrustedRoot};
use gatehouse_npm::version::Version;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |b| *b == 0xFF);
    let (root, bundle) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let root = TrustedRoot::parse(root).unwrap_or_else(|_| TrustedRoot::public_good());
    let (Ok(name), Ok(version)) = (PackageName::parse("@acme/lib"), Version::parse("1.0.0")) else {
        return;
    };
    // Nothing made up verifies: the signatures would have to be forged.
    assert!(provenance::verify(bundle, &root, &name, &version, &"00".repeat(64)).is_err());
});
