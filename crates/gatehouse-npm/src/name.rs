//! npm package names.
//!
//! [`PackageName::parse`] accepts every name npm still serves (the "valid for old packages" rules
//! of validate-npm-package-name 7); [`PackageName::check_new`] adds the rules for names that may
//! be published for the first time. Those rules also make a name safe to put in a URL or a file
//! name: it is ASCII, has no `%`, `\`, control characters or `..` segment, and holds at most the
//! one `/` of `@scope/name`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

/// The longest name we accept. npm only warns above this for old packages, but no package that
/// long exists and a bound keeps names cheap to log and store.
const MAX_LEN: usize = 214;

/// Names that npm refuses outright, compared case-insensitively.
const EXCLUDED: [&str; 2] = ["node_modules", "favicon.ico"];

/// Node core modules, from validate-npm-package-name 7's `builtin-modules.json`. Entries that
/// other rules already reject (`_http_agent`, `fs/promises`, `node:test`…) are left out.
const CORE_MODULES: &[&str] = &[
    "assert",
    "async_hooks",
    "buffer",
    "child_process",
    "cluster",
    "console",
    "constants",
    "crypto",
    "dgram",
    "diagnostics_channel",
    "dns",
    "domain",
    "events",
    "fs",
    "http",
    "http2",
    "https",
    "inspector",
    "module",
    "net",
    "os",
    "path",
    "perf_hooks",
    "process",
    "punycode",
    "querystring",
    "readline",
    "repl",
    "stream",
    "string_decoder",
    "sys",
    "timers",
    "tls",
    "trace_events",
    "tty",
    "url",
    "util",
    "v8",
    "vm",
    "wasi",
    "worker_threads",
    "zlib",
];

/// Characters npm no longer allows in the last segment of a new name.
const SPECIAL_CHARS: &[char] = &['~', '\'', '!', '(', ')', '*'];

/// A validated npm package name, such as `lodash` or `@types/node`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct PackageName(String);

/// Why a package name was refused. The messages are shown to npm users as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid package name: name length must be greater than zero")]
    Empty,
    #[error("invalid package name: name can no longer contain more than {MAX_LEN} characters")]
    TooLong,
    #[error("invalid package name {name:?}: name cannot start with a period")]
    LeadingPeriod { name: String },
    #[error("invalid package name {name:?}: name cannot start with a hyphen")]
    LeadingHyphen { name: String },
    #[error("invalid package name {name:?}: name cannot start with an underscore")]
    LeadingUnderscore { name: String },
    #[error("invalid package name {name:?}: name cannot contain leading or trailing spaces")]
    Whitespace { name: String },
    #[error("invalid package name {name:?}: {name} is not a valid package name")]
    Excluded { name: String },
    #[error("invalid package name {name:?}: name can only contain URL-friendly characters")]
    NotUrlSafe { name: String },
    #[error("invalid package name {name:?}: scope cannot start with a period")]
    ScopeLeadingPeriod { name: String },
    #[error("invalid package name {name:?}: {name} is a core module name")]
    CoreModule { name: String },
    #[error("invalid package name {name:?}: name can no longer contain capital letters")]
    CapitalLetters { name: String },
    #[error("invalid package name {name:?}: name can no longer contain special characters (\"~'!()*\")")]
    SpecialCharacters { name: String },
    #[error("invalid package name {name:?}: {basename} is a reserved device name on Windows")]
    WindowsDeviceName { name: String, basename: String },
    #[error(
        "invalid package name in URL: {escape:?} is not allowed, only the \"/\" of a scoped name \
         may be percent-encoded (%2f)"
    )]
    DisallowedEscape { escape: String },
    #[error("invalid package name in URL: \"%\" must be followed by two hexadecimal digits")]
    MalformedEscape,
}

impl PackageName {
    /// Parses a name that is valid for an existing package (npm's "valid for old packages").
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let name = || s.to_owned();
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(NameError::TooLong);
        }
        if s.starts_with('.') {
            return Err(NameError::LeadingPeriod { name: name() });
        }
        if s.starts_with('-') {
            return Err(NameError::LeadingHyphen { name: name() });
        }
        if s.starts_with('_') {
            return Err(NameError::LeadingUnderscore { name: name() });
        }
        if s.trim() != s {
            return Err(NameError::Whitespace { name: name() });
        }
        if EXCLUDED.iter().any(|excluded| s.eq_ignore_ascii_case(excluded)) {
            return Err(NameError::Excluded { name: name() });
        }
        if is_url_safe(s) {
            return Ok(Self(s.to_owned()));
        }
        let Some((scope, basename)) = split_scoped(s) else {
            return Err(NameError::NotUrlSafe { name: name() });
        };
        // `@scope/name` may hold the two characters encodeURIComponent escapes, `@` and `/`, but
        // its parts must be URL-safe, and the name part may not start with a period (no `..`).
        if basename.starts_with('.') {
            return Err(NameError::LeadingPeriod { name: name() });
        }
        if !is_url_safe(scope) || !is_url_safe(basename) {
            return Err(NameError::NotUrlSafe { name: name() });
        }
        // Our own rule (npm accepts it): no real scope starts with a period, and refusing it
        // keeps `@..` and friends out of anything that maps scopes to directories.
        if scope.starts_with('.') {
            return Err(NameError::ScopeLeadingPeriod { name: name() });
        }
        Ok(Self(s.to_owned()))
    }

    /// Parses a name as it appears in a request path: `lodash`, `@scope%2fname` (npm, yarn, bun)
    /// or `@scope%2Fname` (pnpm).
    ///
    /// Valid names consist of URL-safe characters, so a client never needs to percent-encode
    /// anything but the scope's slash. Any other escape (`%2e%2e`, `%00`, `%5c`, even `%61`) is
    /// refused rather than decoded: it can only be an attempt to smuggle a character past a
    /// check, or to make one package reachable under several URLs.
    pub fn from_path_segment(raw: &str) -> Result<Self, NameError> {
        let mut decoded = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(pos) = rest.find('%') {
            decoded.push_str(&rest[..pos]);
            let escape = rest
                .get(pos..pos + 3)
                .filter(|e| e[1..].bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or(NameError::MalformedEscape)?;
            if !escape.eq_ignore_ascii_case("%2f") {
                return Err(NameError::DisallowedEscape {
                    escape: escape.to_owned(),
                });
            }
            decoded.push('/');
            rest = &rest[pos + 3..];
        }
        decoded.push_str(rest);
        Self::parse(&decoded)
    }

    /// Applies the extra rules for a name published for the first time (npm's "valid for new
    /// packages"), plus a ban on Windows device names, which cannot be installed on Windows.
    pub fn check_new(&self) -> Result<(), NameError> {
        let name = || self.0.clone();
        let lowercase = self.0.to_ascii_lowercase();
        if CORE_MODULES.contains(&lowercase.as_str()) {
            return Err(NameError::CoreModule { name: name() });
        }
        if lowercase != self.0 {
            return Err(NameError::CapitalLetters { name: name() });
        }
        let basename = self.basename();
        if basename.contains(SPECIAL_CHARS) {
            return Err(NameError::SpecialCharacters { name: name() });
        }
        if is_windows_device_name(basename) {
            return Err(NameError::WindowsDeviceName {
                name: name(),
                basename: basename.to_owned(),
            });
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The scope without its `@`: `types` for `@types/node`.
    pub fn scope(&self) -> Option<&str> {
        split_scoped(&self.0).map(|(scope, _)| scope)
    }

    /// The name without its scope: `node` for `@types/node`. Tarball file names use it
    /// (`{basename}-{version}.tgz`).
    pub fn basename(&self) -> &str {
        split_scoped(&self.0).map_or(&self.0, |(_, basename)| basename)
    }

    /// The name as npm puts it in a URL path: `@types%2fnode`.
    pub fn escaped(&self) -> String {
        self.0.replacen('/', "%2f", 1)
    }
}

/// Splits `@scope/name` into its two non-empty parts; `None` for anything else.
fn split_scoped(s: &str) -> Option<(&str, &str)> {
    let (scope, basename) = s.strip_prefix('@')?.split_once('/')?;
    let well_formed = !scope.is_empty() && !basename.is_empty() && !basename.contains('/');
    well_formed.then_some((scope, basename))
}

/// True if `encodeURIComponent(s) == s`.
fn is_url_safe(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b))
}

/// `con`, `nul`, `com1`… also with an extension (`con.js`): Windows reserves them in every
/// directory.
fn is_windows_device_name(basename: &str) -> bool {
    let stem = basename.split('.').next().unwrap_or(basename);
    let stem = stem.to_ascii_lowercase();
    match stem.as_bytes() {
        b"con" | b"prn" | b"aux" | b"nul" => true,
        [b'c', b'o', b'm', digit] | [b'l', b'p', b't', digit] => (b'1'..=b'9').contains(digit),
        _ => false,
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters (`/`
/// included): `@acme/*`, `*-plugin`, `lodash`. Token package limits and policy name
/// patterns use it.
///
/// Never backtracks: the text between two stars is taken at its first fit, the best
/// one when `*` is the only wildcard (a later fit leaves less for the rest).
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PackageName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for PackageName {
    type Error = NameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl Serialize for PackageName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<PackageName, NameError> {
        PackageName::parse(s)
    }

    fn new_name(s: &str) -> Result<PackageName, NameError> {
        let name = PackageName::parse(s)?;
        name.check_new()?;
        Ok(name)
    }

    #[test]
    fn accepts_ordinary_names() {
        for s in [
            "lodash",
            "a",
            "some-package",
            "some.package",
            "some_package",
            "@types/node",
            "@babel/core",
            "@a/b",
            "@scope/name.js",
            "@scope/-name",
            "@scope/_name",
            "a.b-c_d",
            "123",
            "x".repeat(214).as_str(),
        ] {
            let name = new_name(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(name.as_str(), s);
        }
    }

    #[test]
    fn old_rules_allow_what_only_new_packages_forbid() {
        for s in [
            "JSONStream",
            "http",
            "fs",
            "Buffer",
            "foo!",
            "@scope/it's",
            "con",
            "@s/LPT1.js",
        ] {
            let name = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert!(name.check_new().is_err(), "{s} should be refused for new packages");
        }
    }

    #[test]
    fn refuses_bad_names() {
        let cases: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            (&"x".repeat(215), NameError::TooLong),
            (&format!("@s/{}", "x".repeat(212)), NameError::TooLong),
            (".hidden", NameError::LeadingPeriod { name: ".hidden".into() }),
            ("..", NameError::LeadingPeriod { name: "..".into() }),
            (
                "../etc/passwd",
                NameError::LeadingPeriod {
                    name: "../etc/passwd".into(),
                },
            ),
            ("-dash", NameError::LeadingHyphen { name: "-dash".into() }),
            ("_under", NameError::LeadingUnderscore { name: "_under".into() }),
            (" lodash", NameError::Whitespace { name: " lodash".into() }),
            ("lodash ", NameError::Whitespace { name: "lodash ".into() }),
            (
                "node_modules",
                NameError::Excluded {
                    name: "node_modules".into(),
                },
            ),
            (
                "Favicon.ICO",
                NameError::Excluded {
                    name: "Favicon.ICO".into(),
                },
            ),
            (
                "@scope/.name",
                NameError::LeadingPeriod {
                    name: "@scope/.name".into(),
                },
            ),
            (
                "@scope/..",
                NameError::LeadingPeriod {
                    name: "@scope/..".into(),
                },
            ),
            (
                "@../name",
                NameError::ScopeLeadingPeriod {
                    name: "@../name".into(),
                },
            ),
            ("@./name", NameError::ScopeLeadingPeriod { name: "@./name".into() }),
        ];
        for (s, expected) in cases {
            assert_eq!(parse(s).as_ref(), Err(expected), "{s:?}");
        }
    }

    #[test]
    fn refuses_url_unsafe_names() {
        for s in [
            "a/b",
            "a/../b",
            "@scope/a/b",
            "@scope//b",
            "@/name",
            "@scope/",
            "@scope",
            "@@scope/name",
            "foo@1.0.0",
            "a%2fb",
            "%2e%2e",
            "a\\b",
            "@scope\\name",
            "a\0b",
            "a\nb",
            "a b",
            "caf\u{e9}",
            "a:b",
            "a?b",
            "a#b",
            "a+b",
            "@sc ope/name",
            "@scope/na%me",
        ] {
            assert_eq!(parse(s), Err(NameError::NotUrlSafe { name: s.into() }), "{s:?}");
        }
    }

    #[test]
    fn new_package_rules() {
        let cases: &[(&str, NameError)] = &[
            ("http", NameError::CoreModule { name: "http".into() }),
            ("FS", NameError::CoreModule { name: "FS".into() }),
            (
                "worker_threads",
                NameError::CoreModule {
                    name: "worker_threads".into(),
                },
            ),
            ("Lodash", NameError::CapitalLetters { name: "Lodash".into() }),
            (
                "@Scope/name",
                NameError::CapitalLetters {
                    name: "@Scope/name".into(),
                },
            ),
            ("wow!", NameError::SpecialCharacters { name: "wow!".into() }),
            ("@s/it's", NameError::SpecialCharacters { name: "@s/it's".into() }),
            ("a(b)", NameError::SpecialCharacters { name: "a(b)".into() }),
            ("star*", NameError::SpecialCharacters { name: "star*".into() }),
            ("~tilde", NameError::SpecialCharacters { name: "~tilde".into() }),
            (
                "con",
                NameError::WindowsDeviceName {
                    name: "con".into(),
                    basename: "con".into(),
                },
            ),
            (
                "nul.js",
                NameError::WindowsDeviceName {
                    name: "nul.js".into(),
                    basename: "nul.js".into(),
                },
            ),
            (
                "@s/com1",
                NameError::WindowsDeviceName {
                    name: "@s/com1".into(),
                    basename: "com1".into(),
                },
            ),
            (
                "lpt9.d.ts",
                NameError::WindowsDeviceName {
                    name: "lpt9.d.ts".into(),
                    basename: "lpt9.d.ts".into(),
                },
            ),
        ];
        for (s, expected) in cases {
            assert_eq!(new_name(s).as_ref(), Err(expected), "{s:?}");
        }
    }

    #[test]
    fn special_characters_only_matter_in_the_last_segment() {
        assert!(new_name("@it's/fine").is_ok());
    }

    #[test]
    fn device_names_need_an_exact_stem() {
        for s in [
            "console-log",
            "com",
            "com0",
            "com10",
            "lpt",
            "auxiliary",
            "nullable",
            "@con/x",
        ] {
            assert!(new_name(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn accessors() {
        let scoped = parse("@types/node").unwrap();
        assert_eq!(scoped.scope(), Some("types"));
        assert_eq!(scoped.basename(), "node");
        assert_eq!(scoped.escaped(), "@types%2fnode");
        assert_eq!(scoped.to_string(), "@types/node");

        let plain = parse("lodash").unwrap();
        assert_eq!(plain.scope(), None);
        assert_eq!(plain.basename(), "lodash");
        assert_eq!(plain.escaped(), "lodash");
    }

    #[test]
    fn from_path_segment_decodes_only_the_scope_slash() {
        for (raw, expected) in [
            ("lodash", "lodash"),
            ("@scope%2fname", "@scope/name"),
            ("@scope%2Fname", "@scope/name"),
            ("@scope/name", "@scope/name"),
        ] {
            assert_eq!(PackageName::from_path_segment(raw).unwrap().as_str(), expected);
        }
    }

    #[test]
    fn from_path_segment_refuses_other_escapes() {
        for (raw, escape) in [
            ("%2e%2e", "%2e"),
            ("@scope%2f%2e%2e", "%2e"),
            ("lo%00dash", "%00"),
            ("a%5cb", "%5c"),
            ("%6codash", "%6c"),
            ("@scope%252fname", "%25"),
        ] {
            assert_eq!(
                PackageName::from_path_segment(raw),
                Err(NameError::DisallowedEscape { escape: escape.into() }),
                "{raw}"
            );
        }
        for raw in ["%", "a%2", "a%zz", "@s%2/x", "%\u{e9}a"] {
            assert_eq!(
                PackageName::from_path_segment(raw),
                Err(NameError::MalformedEscape),
                "{raw}"
            );
        }
    }

    #[test]
    fn from_path_segment_still_validates_the_decoded_name() {
        assert_eq!(
            PackageName::from_path_segment("foo%2fbar"),
            Err(NameError::NotUrlSafe { name: "foo/bar".into() })
        );
        assert_eq!(
            PackageName::from_path_segment("@a%2fb%2fc"),
            Err(NameError::NotUrlSafe { name: "@a/b/c".into() })
        );
        assert_eq!(
            PackageName::from_path_segment("@scope%2f.."),
            Err(NameError::LeadingPeriod {
                name: "@scope/..".into()
            })
        );
    }

    #[test]
    fn error_messages_read_well() {
        assert_eq!(
            parse("a b").unwrap_err().to_string(),
            r#"invalid package name "a b": name can only contain URL-friendly characters"#
        );
        assert_eq!(
            parse("a\0b").unwrap_err().to_string(),
            r#"invalid package name "a\0b": name can only contain URL-friendly characters"#
        );
        assert_eq!(
            new_name("fs").unwrap_err().to_string(),
            r#"invalid package name "fs": fs is a core module name"#
        );
        assert_eq!(
            PackageName::from_path_segment("%2e%2e").unwrap_err().to_string(),
            r#"invalid package name in URL: "%2e" is not allowed, only the "/" of a scoped name may be percent-encoded (%2f)"#
        );
    }

    #[test]
    fn serde_round_trip_validates() {
        let name = parse("@scope/name").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), r#""@scope/name""#);
        let back: PackageName = serde_json::from_str(r#""@scope/name""#).unwrap();
        assert_eq!(back, name);
        assert!(serde_json::from_str::<PackageName>(r#""../x""#).is_err());
    }

    #[test]
    fn from_str_and_try_from_agree_with_parse() {
        assert_eq!("lodash".parse::<PackageName>(), parse("lodash"));
        assert_eq!(PackageName::try_from("a b".to_owned()), parse("a b"));
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_matches("@acme/*", "@acme/lib"));
        assert!(!glob_matches("@acme/*", "@other/lib"));
        assert!(glob_matches("lodash", "lodash"));
        assert!(!glob_matches("lodash", "lodash.merge"));
        assert!(glob_matches("*-plugin", "babel-plugin"));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("a*b*c", "a-b-c"));
        assert!(!glob_matches("a*b*c", "a-c-b"));
        assert!(glob_matches("a*a", "aa") && !glob_matches("a*a", "a"));
        assert!(glob_matches("*ab*ab", "abab") && !glob_matches("*ab*ab", "aba"));
        assert!(glob_matches("**", "") && glob_matches("é*", "éa"));
    }

    /// Found by the `authorization_header` fuzz target: the backtracking matcher took
    /// exponential time on a run of stars, and a token's package patterns are any valid
    /// name (`*` is URL-safe), matched on every request the token makes.
    #[test]
    fn glob_matching_is_linear_in_a_run_of_stars() {
        let pattern = format!("{}b", "*a".repeat(100));
        let name = "a".repeat(214);
        let started = std::time::Instant::now();
        assert!(!glob_matches(&pattern, &name));
        assert!(glob_matches(&pattern, &format!("{name}b")));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
