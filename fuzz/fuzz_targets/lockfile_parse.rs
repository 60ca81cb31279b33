//! Lockfiles of every kind (package-lock, pnpm-lock, yarn.lock classic and berry,
//! bun.lock): never a panic, and what parses lists each package once, sorted.
#![no_main]

use gatehouse_npm::lockfile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(lock) = lockfile::parse(text) {
        assert!(lock.packages.windows(2).all(|w| w[0] < w[1]), "{:?}", lock.packages);
        assert!(!lock.kind.as_str().is_empty());
    }
});
