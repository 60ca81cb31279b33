//! Request paths under `/r/{registry}/`: never a panic, no route that lets a `.` or
//! `..` segment through in any spelling, and no decoded part that holds a slash,
//! a backslash or a control character.
#![no_main]

use gatehouse_npm::name::PackageName;
use gatehouse_npm::route::{self, Route};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|path: &str| {
    let Ok(route) = route::parse(path) else {
        return;
    };
    for segment in percent_decode(path).split('/') {
        assert!(segment != "." && segment != "..", "{path:?} parsed to {route:?}");
    }
    let (name, parts): (Option<&PackageName>, Vec<&str>) = match &route {
        Route::WebLoginPage { id } | Route::WebLoginDone { id } => (None, vec![id]),
        Route::User { name } => (None, vec![name]),
        Route::UserToken { token } => (None, vec![token]),
        Route::Token { key } => (None, vec![key]),
        Route::DistTags { name }
        | Route::Collaborators { name }
        | Route::Visibility { name }
        | Route::Packument { name } => (Some(name), vec![]),
        Route::DistTag { name, tag } => (Some(name), vec![tag]),
        Route::VersionOrTag { name, spec } => (Some(name), vec![spec]),
        Route::Tarball { name, file } => (Some(name), vec![file]),
        Route::PackageRev { name, rev } => (Some(name), vec![rev]),
        Route::TarballRev { name, file, rev } => (Some(name), vec![file, rev]),
        _ => (None, vec![]),
    };
    if let Some(name) = name {
        assert_eq!(PackageName::parse(name.as_str()).as_ref(), Ok(name));
    }
    for part in parts {
        assert!(
            !part.contains(['/', '\\']) && !part.chars().any(char::is_control),
            "{path:?} parsed to {route:?}"
        );
    }
});

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
