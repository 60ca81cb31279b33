//! `Authorization` headers (`Bearer`, `Basic`) and the package globs tokens are
//! limited to. Credentials read back to what was encoded; the glob agrees with a
//! plain backtracking matcher on short inputs and answers in linear time on long ones.
#![no_main]

use base64::Engine as _;
use gatehouse_npm::authorization::{self, Credentials, MAX_HEADER_LEN};
use gatehouse_npm::name::glob_matches;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if selector % 2 == 0 {
        header(text);
    } else {
        // `pattern\nname`
        let (pattern, name) = text.split_once('\n').unwrap_or((text, ""));
        glob(pattern, name);
    }
});

fn header(text: &str) {
    match authorization::parse(text) {
        Ok(Credentials::Bearer(token)) => {
            assert!(!token.is_empty() && token.trim() == token);
            assert!(text.len() <= MAX_HEADER_LEN);
        }
        Ok(Credentials::Basic { user, password }) => {
            assert!(!user.contains(':'));
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            assert_eq!(
                authorization::parse(&format!("Basic {encoded}")),
                Ok(Credentials::Basic { user, password })
            );
        }
        Err(_) => {}
    }
}

fn glob(pattern: &str, name: &str) {
    let matched = glob_matches(pattern, name);
    if !pattern.contains('*') {
        assert_eq!(matched, pattern == name);
    }
    if pattern.len() + name.len() <= 24 {
        assert_eq!(matched, backtracking(pattern, name), "{pattern:?} {name:?}");
    }
    // Any name matches itself with a star put anywhere in it.
    let at = name
        .char_indices()
        .nth(pattern.len() % (name.chars().count() + 1))
        .map_or(name.len(), |(i, _)| i);
    let starred = format!("{}*{}", &name[..at], &name[at..]);
    assert!(glob_matches(&starred, name));
}

/// The obvious matcher, exponential on some inputs: the reference for short ones.
fn backtracking(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, rest)) => name
            .strip_prefix(prefix)
            .is_some_and(|tail| (0..=tail.len()).any(|i| tail.is_char_boundary(i) && backtracking(rest, &tail[i..]))),
    }
}
