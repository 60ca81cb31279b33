//! Which package versions a lockfile pins: `package-lock.json` (v2, v3),
//! `pnpm-lock.yaml`, `yarn.lock` (classic and berry) and `bun.lock`. Only what comes
//! from a registry counts (by name and version, whatever host its `resolved` URL
//! names); workspace, git, file and link entries are skipped and counted.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::name::PackageName;
use crate::version::Version;

/// Lockfiles larger than this are refused (the largest real ones are a few MB).
pub const MAX_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockfileKind {
    Npm,
    Pnpm,
    YarnClassic,
    YarnBerry,
    Bun,
}

impl LockfileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LockfileKind::Npm => "package-lock.json",
            LockfileKind::Pnpm => "pnpm-lock.yaml",
            LockfileKind::YarnClassic => "yarn.lock (classic)",
            LockfileKind::YarnBerry => "yarn.lock (berry)",
            LockfileKind::Bun => "bun.lock",
        }
    }
}

/// One registry package a lockfile pins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Locked {
    pub name: PackageName,
    pub version: Version,
}

/// What a lockfile pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockfile {
    pub kind: LockfileKind,
    /// Each registry package once, sorted.
    pub packages: Vec<Locked>,
    /// Entries that are not registry packages (workspaces, git, files, links).
    pub skipped: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockfileError {
    #[error(
        "this is not a lockfile Gatehouse reads: expected package-lock.json (v2 or v3), pnpm-lock.yaml, yarn.lock or bun.lock"
    )]
    NotALockfile,
    #[error("lockfile is larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("package-lock.json version {0} is not supported: run npm install with npm 7 or later to write v2 or v3")]
    OldNpmLockfile(u64),
    #[error("{kind} is malformed: {why}")]
    Malformed { kind: &'static str, why: String },
}

/// Reads a lockfile of any supported kind, recognised by its content.
pub fn parse(text: &str) -> Result<Lockfile, LockfileError> {
    if text.len() > MAX_BYTES {
        return Err(LockfileError::TooLarge);
    }
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') {
        return parse_json(trimmed);
    }
    if trimmed.starts_with("# yarn lockfile v1") || trimmed.contains("\n# yarn lockfile v1") {
        return yarn_classic(trimmed);
    }
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(trimmed).map_err(|_| LockfileError::NotALockfile)?;
    let map = yaml.as_mapping().ok_or(LockfileError::NotALockfile)?;
    if map.contains_key("__metadata") {
        return yarn_berry(map);
    }
    if map.contains_key("lockfileVersion") {
        return pnpm(map);
    }
    Err(LockfileError::NotALockfile)
}

fn malformed(kind: LockfileKind, why: impl Into<String>) -> LockfileError {
    LockfileError::Malformed {
        kind: kind.as_str(),
        why: why.into(),
    }
}

/// Collects entries; one that is not a registry package is counted as skipped.
#[derive(Default)]
struct Found {
    packages: BTreeSet<Locked>,
    skipped: usize,
}

impl Found {
    fn add(&mut self, name: &str, version: &str) {
        match (PackageName::parse(name), Version::parse(version)) {
            (Ok(name), Ok(version)) => {
                self.packages.insert(Locked { name, version });
            }
            _ => self.skipped += 1,
        }
    }

    fn finish(self, kind: LockfileKind) -> Lockfile {
        Lockfile {
            kind,
            packages: self.packages.into_iter().collect(),
            skipped: self.skipped,
        }
    }
}

fn parse_json(text: &str) -> Result<Lockfile, LockfileError> {
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        // bun.lock is JSON with trailing commas.
        Err(_) => serde_json::from_str(&without_trailing_commas(text)).map_err(|_| LockfileError::NotALockfile)?,
    };
    let version = value.get("lockfileVersion").ok_or(LockfileError::NotALockfile)?;
    if value.get("workspaces").is_some() {
        return bun(&value);
    }
    match version.as_u64() {
        Some(2 | 3) => npm(&value),
        Some(old) => Err(LockfileError::OldNpmLockfile(old)),
        None => Err(LockfileError::NotALockfile),
    }
}

/// `package-lock.json` v2/v3: `packages` keyed by `node_modules/…` paths.
fn npm(value: &Value) -> Result<Lockfile, LockfileError> {
    let kind = LockfileKind::Npm;
    let packages = value
        .get("packages")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed(kind, "it has no \"packages\" object"))?;
    let mut found = Found::default();
    for (path, entry) in packages {
        let Some(at) = path.rfind("node_modules/") else {
            continue; // the root project, or a workspace folder
        };
        if entry.get("link").and_then(Value::as_bool) == Some(true) {
            found.skipped += 1;
            continue;
        }
        let resolved = entry.get("resolved").and_then(Value::as_str).unwrap_or_default();
        if resolved.starts_with("git") || resolved.starts_with("file:") {
            found.skipped += 1;
            continue;
        }
        // An alias (`"x": "npm:real@1"`) is installed under its alias with the real name.
        let name = entry
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(&path[at + "node_modules/".len()..]);
        match entry.get("version").and_then(Value::as_str) {
            Some(version) => found.add(name, version),
            None => found.skipped += 1,
        }
    }
    Ok(found.finish(kind))
}

/// `bun.lock`: `packages` maps a key to `["name@version", registry, {…}, integrity]`.
fn bun(value: &Value) -> Result<Lockfile, LockfileError> {
    let kind = LockfileKind::Bun;
    let packages = value
        .get("packages")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed(kind, "it has no \"packages\" object"))?;
    let mut found = Found::default();
    for entry in packages.values() {
        let Some(spec) = entry.get(0).and_then(Value::as_str) else {
            return Err(malformed(kind, "a package entry is not [\"name@version\", …]"));
        };
        match split_spec(spec) {
            Some((name, version)) if !version.contains(':') => found.add(name, version),
            _ => found.skipped += 1, // workspace:, github:, file:, link:
        }
    }
    Ok(found.finish(kind))
}

/// `pnpm-lock.yaml`: `packages` keyed `name@version` (v9), `/name@version` (v6) or
/// `/name/version` (v5), a peer suffix `(…)` allowed.
fn pnpm(map: &serde_yaml_ng::Mapping) -> Result<Lockfile, LockfileError> {
    let kind = LockfileKind::Pnpm;
    let mut found = Found::default();
    let Some(packages) = map.get("packages") else {
        return Ok(found.finish(kind)); // a project without dependencies
    };
    let packages = packages
        .as_mapping()
        .ok_or_else(|| malformed(kind, "\"packages\" is not a mapping"))?;
    for (key, entry) in packages {
        let key = key
            .as_str()
            .ok_or_else(|| malformed(kind, "a package key is not text"))?;
        let resolution = entry.get("resolution");
        if resolution.is_some_and(|r| r.get("tarball").is_some() && r.get("integrity").is_none())
            || resolution.is_some_and(|r| r.get("repo").is_some() || r.get("directory").is_some())
        {
            found.skipped += 1;
            continue;
        }
        let key = key.split('(').next().unwrap_or(key);
        let key = key.strip_prefix('/').unwrap_or(key);
        let parsed = split_spec(key).or_else(|| {
            // v5: name/version, the version after the last slash.
            let (name, version) = key.rsplit_once('/')?;
            Some((name, version))
        });
        match parsed {
            Some((name, version)) => found.add(name, version),
            None => found.skipped += 1,
        }
    }
    Ok(found.finish(kind))
}

/// yarn berry's `yarn.lock`: YAML whose entries name their `resolution`.
fn yarn_berry(map: &serde_yaml_ng::Mapping) -> Result<Lockfile, LockfileError> {
    let kind = LockfileKind::YarnBerry;
    let mut found = Found::default();
    for (key, entry) in map {
        if key.as_str() == Some("__metadata") {
            continue;
        }
        let resolution = entry.get("resolution").and_then(|r| r.as_str()).ok_or_else(|| {
            malformed(
                kind,
                format!("entry {:?} has no resolution", key.as_str().unwrap_or("?")),
            )
        })?;
        match resolution.rsplit_once("@npm:") {
            Some((name, version)) => found.add(name, version),
            None => found.skipped += 1, // workspace:, patch:, git, file, link
        }
    }
    Ok(found.finish(kind))
}

/// yarn classic's `yarn.lock`: blocks headed by the specs they satisfy, with an
/// indented `version "…"` line.
fn yarn_classic(text: &str) -> Result<Lockfile, LockfileError> {
    let kind = LockfileKind::YarnClassic;
    let mut found = Found::default();
    let mut name: Option<String> = None;
    for (number, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            let header = line
                .strip_suffix(':')
                .ok_or_else(|| malformed(kind, format!("line {}: expected a header ending in ':'", number + 1)))?;
            let first = header.split(", ").next().unwrap_or(header).trim_matches('"');
            // `alias@npm:real@^1` installs `real`.
            let spec = first.split_once("@npm:").map_or(first, |(_, real)| real);
            name = split_spec(spec).map(|(name, _)| name.to_owned());
            continue;
        }
        if let Some(version) = line.trim().strip_prefix("version ") {
            let version = version.trim_matches('"');
            match &name {
                Some(name) => found.add(name, version),
                None => found.skipped += 1,
            }
            name = None;
        }
    }
    Ok(found.finish(kind))
}

/// `name@version` → (name, version), the `@` of a scope not counted.
fn split_spec(spec: &str) -> Option<(&str, &str)> {
    let at = spec.get(1..)?.find('@')? + 1;
    Some((&spec[..at], &spec[at + 1..]))
}

/// JSON text with the trailing commas bun writes removed (outside strings).
fn without_trailing_commas(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut pending_comma = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            ',' => {
                if pending_comma {
                    out.push(',');
                }
                pending_comma = true;
                continue;
            }
            c if c.is_whitespace() => {
                out.push(c);
                continue;
            }
            '}' | ']' => pending_comma = false,
            _ => {
                if pending_comma {
                    out.push(',');
                }
                pending_comma = false;
            }
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pins(lockfile: &Lockfile) -> Vec<String> {
        lockfile
            .packages
            .iter()
            .map(|l| format!("{}@{}", l.name, l.version))
            .collect()
    }

    #[test]
    fn package_lock_v3() {
        let text = r#"{
          "name": "app", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
          "packages": {
            "": { "name": "app", "dependencies": { "lodash": "^4.17.0" } },
            "node_modules/lodash": { "version": "4.17.21", "resolved": "https://registry.npmjs.org/lodash/-/lodash-4.17.21.tgz" },
            "node_modules/@babel/core": { "version": "7.24.0" },
            "node_modules/a/node_modules/lodash": { "version": "3.10.1" },
            "node_modules/alias": { "name": "real-pkg", "version": "2.0.0" },
            "node_modules/local": { "resolved": "packages/local", "link": true },
            "node_modules/from-git": { "version": "1.0.0", "resolved": "git+ssh://git@github.com/x/y.git#abc" },
            "packages/local": { "version": "0.0.1" }
          }
        }"#;
        let lock = parse(text).expect("parses");
        assert_eq!(lock.kind, LockfileKind::Npm);
        assert_eq!(
            pins(&lock),
            [
                "@babel/core@7.24.0",
                "lodash@3.10.1",
                "lodash@4.17.21",
                "real-pkg@2.0.0"
            ]
        );
        assert_eq!(lock.skipped, 2);
    }

    #[test]
    fn pnpm_v9_v6_and_v5_keys() {
        let text = "lockfileVersion: '9.0'\nimporters:\n  .:\n    dependencies: {}\npackages:\n  lodash@4.17.21:\n    resolution: {integrity: sha512-x}\n  '@types/node@20.1.0':\n    resolution: {integrity: sha512-y}\n  react-dom@18.2.0(react@18.2.0):\n    resolution: {integrity: sha512-z}\n  /old@1.0.0:\n    resolution: {integrity: sha512-w}\n  /older/2.0.0:\n    resolution: {integrity: sha512-v}\n  gitdep@1.0.0:\n    resolution: {tarball: https://codeload.github.com/x/y/tar.gz/abc}\n";
        let lock = parse(text).expect("parses");
        assert_eq!(lock.kind, LockfileKind::Pnpm);
        assert_eq!(
            pins(&lock),
            [
                "@types/node@20.1.0",
                "lodash@4.17.21",
                "old@1.0.0",
                "older@2.0.0",
                "react-dom@18.2.0"
            ]
        );
        assert_eq!(lock.skipped, 1);
    }

    #[test]
    fn yarn_classic_blocks() {
        let text = "# THIS IS AN AUTOGENERATED FILE. DO NOT EDIT THIS FILE DIRECTLY.\n# yarn lockfile v1\n\n\n\"@scope/pkg@^1.0.0\":\n  version \"1.2.3\"\n  resolved \"https://registry.yarnpkg.com/@scope/pkg/-/pkg-1.2.3.tgz#abc\"\n\nlodash@^4.17.0, lodash@^4.17.20:\n  version \"4.17.21\"\n  resolved \"https://registry.yarnpkg.com/lodash/-/lodash-4.17.21.tgz\"\n  integrity sha512-x\n\nalias@npm:real@^2:\n  version \"2.0.1\"\n";
        let lock = parse(text).expect("parses");
        assert_eq!(lock.kind, LockfileKind::YarnClassic);
        assert_eq!(pins(&lock), ["@scope/pkg@1.2.3", "lodash@4.17.21", "real@2.0.1"]);
    }

    #[test]
    fn yarn_berry_resolutions() {
        let text = "__metadata:\n  version: 8\n  cacheKey: 10c0\n\n\"lodash@npm:^4.17.0\":\n  version: 4.17.21\n  resolution: \"lodash@npm:4.17.21\"\n  checksum: 10c0/abc\n\n\"@scope/pkg@npm:1.0.0\":\n  version: 1.0.0\n  resolution: \"@scope/pkg@npm:1.0.0\"\n\n\"app@workspace:.\":\n  version: 0.0.0-use.local\n  resolution: \"app@workspace:.\"\n";
        let lock = parse(text).expect("parses");
        assert_eq!(lock.kind, LockfileKind::YarnBerry);
        assert_eq!(pins(&lock), ["@scope/pkg@1.0.0", "lodash@4.17.21"]);
        assert_eq!(lock.skipped, 1);
    }

    #[test]
    fn bun_lock_with_trailing_commas() {
        let text = "{\n  \"lockfileVersion\": 1,\n  \"workspaces\": {\n    \"\": { \"name\": \"app\", \"dependencies\": { \"lodash\": \"^4\", }, },\n  },\n  \"packages\": {\n    \"lodash\": [\"lodash@4.17.21\", \"\", {}, \"sha512-x,y\"],\n    \"@s/p\": [\"@s/p@1.0.0\", \"\", {}, \"sha512-z\"],\n    \"local\": [\"local@workspace:packages/local\"],\n  },\n}\n";
        let lock = parse(text).expect("parses");
        assert_eq!(lock.kind, LockfileKind::Bun);
        assert_eq!(pins(&lock), ["@s/p@1.0.0", "lodash@4.17.21"]);
        assert_eq!(lock.skipped, 1);
    }

    #[test]
    fn what_is_no_lockfile_is_refused_clearly() {
        for text in [
            "",
            "hello world",
            "{\"name\": \"app\"}",
            "- a\n- b\n",
            "[1, 2]",
            "key: value\n",
        ] {
            assert_eq!(parse(text), Err(LockfileError::NotALockfile), "{text:?}");
        }
        assert_eq!(
            parse("{\"lockfileVersion\": 1, \"dependencies\": {}}"),
            Err(LockfileError::OldNpmLockfile(1))
        );
        assert!(matches!(
            parse("{\"lockfileVersion\": 3}"),
            Err(LockfileError::Malformed { .. })
        ));
        assert!(matches!(
            parse("# yarn lockfile v1\n\nnot a header\n"),
            Err(LockfileError::Malformed { .. })
        ));
        assert!(matches!(
            parse("__metadata:\n  version: 8\nx@npm:1:\n  version: 1\n"),
            Err(LockfileError::Malformed { .. })
        ));
        assert_eq!(parse(&" ".repeat(MAX_BYTES + 1)), Err(LockfileError::TooLarge));
    }

    #[test]
    fn trailing_commas_are_removed_outside_strings_only() {
        let cleaned = without_trailing_commas("{\"a\": [1, 2,], \"b\": \",]\",}");
        let value: Value = serde_json::from_str(&cleaned).expect("valid JSON");
        assert_eq!(value, serde_json::json!({"a": [1, 2], "b": ",]"}));
    }
}
