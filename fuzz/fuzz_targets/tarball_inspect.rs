//! Tarball inspection (`gatehouse_npm::tarball`): never a panic, never past its
//! limits, and what it accepts has a `package.json` object and counts add up.
//!
//! The first byte picks the input's form and the limits: with the low bit set the
//! rest is a tar archive the harness gzips (so the fuzzer works on tar headers, not
//! on deflate and CRCs); otherwise it is the `.tgz` as sent. Bit 1 picks tight
//! limits, so the limit checks are reached with small inputs.
#![no_main]

use std::io::Write as _;

use flate2::Compression;
use flate2::write::GzEncoder;
use gatehouse_npm::tarball::{TarballLimits, inspect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let gz = if flags & 1 == 1 {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(rest).expect("writing to memory");
        encoder.finish().expect("writing to memory")
    } else {
        rest.to_vec()
    };
    let limits = if flags & 2 == 2 {
        TarballLimits {
            max_unpacked_bytes: 4096,
            max_entries: 8,
            max_package_json_bytes: 1024,
        }
    } else {
        TarballLimits::default()
    };
    if let Ok(info) = inspect(&gz, &limits) {
        assert!(info.unpacked_size <= limits.max_unpacked_bytes);
        assert!((1..=limits.max_entries).contains(&info.file_count), "{info:?}");
        let json = serde_json::to_vec(&info.manifest).expect("a manifest serializes");
        assert!(json.len() as u64 <= limits.max_package_json_bytes.saturating_mul(6) + 2);
    }
});
