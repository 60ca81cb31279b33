//! `dist.integrity` (SRI) and `dist.shasum` strings checked against a tarball's
//! digests: never a panic, and the digests' own SRI and shasum always verify.
#![no_main]

use gatehouse_npm::integrity::{Digests, verify_declared};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `integrity\nshasum\nbytes`: the declared strings, then what was hashed.
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let integrity = parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let shasum = parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let bytes = parts.next().unwrap_or_default();
    let digests = Digests::of(bytes);
    let _ = verify_declared(&digests, integrity, shasum);
    let _ = verify_declared(&digests, integrity, None);
    let _ = verify_declared(&digests, None, shasum);
    let own_sri = digests.sri_sha512();
    let own_shasum = digests.shasum_hex();
    verify_declared(&digests, Some(&own_sri), Some(&own_shasum)).expect("own digests verify");
    verify_declared(&digests, Some(&format!("sha1-x?y {own_sri}")), None).expect_err("a bad sha1 entry is refused");
    if let Some(integrity) = integrity
        && verify_declared(&digests, Some(integrity), None).is_ok()
    {
        // Whatever verified still verifies with more of our own digests next to it.
        verify_declared(&digests, Some(&format!("{integrity} {own_sri}")), Some(&own_shasum))
            .expect("adding matching digests changes nothing");
    }
});
