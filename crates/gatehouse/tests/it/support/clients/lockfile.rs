//! Reading each client's lockfile into [`LockedPackage`]s (no YAML parser: the formats are regular).

use std::path::PathBuf;

use serde_json::Value;

use super::ClientKind;

/// The packages recorded in the lockfile text of `kind`.
pub(super) fn parse(kind: ClientKind, text: &str) -> Vec<LockedPackage> {
    match kind {
        ClientKind::Npm => parse_package_lock(text),
        ClientKind::Pnpm => parse_pnpm_lock(text),
        ClientKind::YarnClassic => parse_yarn_classic_lock(text),
        ClientKind::YarnBerry => parse_yarn_berry_lock(text),
        ClientKind::Bun => parse_bun_lock(text),
    }
}

/// A parsed lockfile.
#[derive(Debug)]
pub struct Lockfile {
    pub kind: ClientKind,
    pub path: PathBuf,
    pub text: String,
    pub packages: Vec<LockedPackage>,
}

/// One package as a lockfile records it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    /// The tarball URL, when recorded (npm `resolved`, yarn 1 `resolved` without `#sha1`, bun's
    /// URL, pnpm's `resolution.tarball`, berry's decoded `__archiveUrl`).
    pub resolved: Option<String>,
    /// The SRI integrity, when recorded (all but yarn berry).
    pub integrity: Option<String>,
    /// Yarn berry's cache checksum (`10c0/…`).
    pub checksum: Option<String>,
    /// The raw resolution field (pnpm `resolution: {…}`, berry `resolution:`), empty elsewhere.
    pub resolution: String,
}

impl Lockfile {
    /// The entry for `name`; panics with the whole lockfile if there is none.
    pub fn get(&self, name: &str) -> &LockedPackage {
        self.packages
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{:?}: no {name} in {}:\n{}", self.kind, self.path.display(), self.text))
    }
}

fn parse_package_lock(text: &str) -> Vec<LockedPackage> {
    let lock: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("package-lock.json: {e}\n{text}"));
    let Some(packages) = lock["packages"].as_object() else {
        return Vec::new();
    };
    packages
        .iter()
        .filter(|(key, _)| key.contains("node_modules/"))
        .map(|(key, entry)| LockedPackage {
            name: key.rsplit("node_modules/").next().unwrap_or(key).to_owned(),
            version: entry["version"].as_str().unwrap_or_default().to_owned(),
            resolved: entry["resolved"].as_str().map(str::to_owned),
            integrity: entry["integrity"].as_str().map(str::to_owned),
            ..LockedPackage::default()
        })
        .collect()
}

/// pnpm-lock.yaml v9: entries of the top-level `packages:` map, e.g.
/// `  '@e2e/lib@1.0.0':` followed by `    resolution: {integrity: sha512-…, tarball: …}`.
fn parse_pnpm_lock(text: &str) -> Vec<LockedPackage> {
    let mut packages = Vec::new();
    let mut in_packages = false;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_packages = line.trim_end() == "packages:";
            continue;
        }
        if !in_packages {
            continue;
        }
        if let Some(key) = line.strip_prefix("  ").filter(|rest| !rest.starts_with(' ')) {
            let key = unquote(key.trim_end().trim_end_matches(':'));
            let (name, version) = split_name_version(&key);
            packages.push(LockedPackage {
                name,
                version,
                ..LockedPackage::default()
            });
        } else if let (Some(entry), Some(resolution)) = (packages.last_mut(), line.trim().strip_prefix("resolution:")) {
            let resolution = resolution.trim();
            entry.resolution = resolution.to_owned();
            for field in resolution.trim_start_matches('{').trim_end_matches('}').split(", ") {
                match field.split_once(": ") {
                    Some(("integrity", value)) => entry.integrity = Some(unquote(value)),
                    Some(("tarball", value)) => entry.resolved = Some(unquote(value)),
                    _ => {}
                }
            }
        }
    }
    packages
}

/// yarn.lock v1: `"@e2e/lib@1.0.0":` then `  version "1.0.0"`, `  resolved "URL#sha1"`, `  integrity sha512-…`.
fn parse_yarn_classic_lock(text: &str) -> Vec<LockedPackage> {
    let mut packages: Vec<LockedPackage> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            let first_spec = line.trim_end_matches(':').split(", ").next().unwrap_or_default();
            let (name, _range) = split_name_version(&unquote(first_spec));
            packages.push(LockedPackage {
                name,
                ..LockedPackage::default()
            });
            continue;
        }
        let Some(entry) = packages.last_mut() else { continue };
        let Some((key, value)) = line.trim().split_once(' ') else {
            continue;
        };
        let value = unquote(value);
        match key {
            "version" => entry.version = value,
            "resolved" => entry.resolved = Some(value.split('#').next().unwrap_or_default().to_owned()),
            "integrity" => entry.integrity = Some(value),
            _ => {}
        }
    }
    packages
}

/// Yarn berry's yarn.lock: `"@e2e/lib@npm:1.0.0":` then `  version: 1.0.0`,
/// `  resolution: "@e2e/lib@npm:1.0.0"` (or `…::__archiveUrl=<percent-encoded URL>`), `  checksum: 10c0/…`.
fn parse_yarn_berry_lock(text: &str) -> Vec<LockedPackage> {
    let mut packages: Vec<LockedPackage> = Vec::new();
    let mut current: Option<LockedPackage> = None;
    fn flush(entry: Option<LockedPackage>, packages: &mut Vec<LockedPackage>) {
        if let Some(entry) = entry.filter(|e| !e.resolution.is_empty() && !e.resolution.contains("@workspace:")) {
            packages.push(entry);
        }
    }
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            flush(current.take(), &mut packages);
            current = Some(LockedPackage::default());
            continue;
        }
        let Some(entry) = current.as_mut() else { continue };
        let Some((key, value)) = line.trim().split_once(": ") else {
            continue;
        };
        let value = unquote(value);
        match key {
            "version" => entry.version = value,
            "checksum" => entry.checksum = Some(value),
            "resolution" => {
                // The '@' that ends the name is the first one after a scope's leading '@'.
                let end = value[1..].find('@').map_or(value.len(), |i| i + 1);
                entry.name = value[..end].to_owned();
                entry.resolved = value.split_once("__archiveUrl=").map(|(_, url)| percent_decode(url));
                entry.resolution = value;
            }
            _ => {}
        }
    }
    flush(current.take(), &mut packages);
    packages
}

/// bun.lock (JSON with trailing commas): `"packages": { "<name>": ["<name>@<version>", "<tarball URL>", {…}, "<integrity>"] }`.
fn parse_bun_lock(text: &str) -> Vec<LockedPackage> {
    let lock: Value =
        serde_json::from_str(&strip_trailing_commas(text)).unwrap_or_else(|e| panic!("bun.lock: {e}\n{text}"));
    let Some(packages) = lock["packages"].as_object() else {
        return Vec::new();
    };
    packages
        .values()
        .filter_map(Value::as_array)
        .filter_map(|entry| {
            let (name, version) = split_name_version(entry.first()?.as_str()?);
            let resolved = entry
                .get(1)
                .and_then(Value::as_str)
                .filter(|url| !url.is_empty())
                .map(str::to_owned);
            let integrity = entry
                .iter()
                .skip(2)
                .filter_map(Value::as_str)
                .find(|s| s.starts_with("sha"))
                .map(str::to_owned);
            Some(LockedPackage {
                name,
                version,
                resolved,
                integrity,
                ..LockedPackage::default()
            })
        })
        .collect()
}

/// Splits `name@version` (or `name@range`), keeping a scope's leading `@` in the name.
fn split_name_version(spec: &str) -> (String, String) {
    match spec.get(1..).and_then(|rest| rest.find('@')) {
        Some(i) => (spec[..=i].to_owned(), spec[i + 2..].to_owned()),
        None => (spec.to_owned(), String::new()),
    }
}

fn unquote(value: &str) -> String {
    let value = value.trim();
    for quote in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(quote).and_then(|v| v.strip_suffix(quote)) {
            return inner.to_owned();
        }
    }
    value.to_owned()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%').then(|| text.get(i + 1..i + 3)).flatten();
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Drops commas that directly precede `}` or `]` (outside strings), turning bun.lock into JSON.
fn strip_trailing_commas(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for (i, &c) in chars.iter().enumerate() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '"' {
            in_string = true;
        } else if c == ',' {
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some('}' | ']')) {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// The scalar after the first `key` in a YAML text (for pnpm's `.modules.yaml` if it is YAML).
pub(super) fn yaml_scalar_after(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(key).map(|v| unquote(v.trim())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_scoped_and_unscoped_specs() {
        assert_eq!(
            split_name_version("@e2e/lib@1.0.0"),
            ("@e2e/lib".to_owned(), "1.0.0".to_owned())
        );
        assert_eq!(
            split_name_version("pkg@^1.0.0"),
            ("pkg".to_owned(), "^1.0.0".to_owned())
        );
        assert_eq!(split_name_version("pkg"), ("pkg".to_owned(), String::new()));
    }

    #[test]
    fn parses_lockfiles() {
        let pnpm = "lockfileVersion: '9.0'\n\nimporters:\n\n  .:\n    dependencies:\n      a:\n        specifier: 1.0.0\n        version: 1.0.0\n\npackages:\n\n  '@s/b@1.0.0':\n    resolution: {integrity: sha512-B==, tarball: http://h/r/x/@s/b/-/b-1.0.0.tgz}\n\n  a@1.0.0:\n    resolution: {integrity: sha512-A==}\n\nsnapshots:\n\n  a@1.0.0: {}\n";
        let lock = parse_pnpm_lock(pnpm);
        assert_eq!(lock.len(), 2);
        assert_eq!(lock[0].name, "@s/b");
        assert_eq!(lock[0].resolved.as_deref(), Some("http://h/r/x/@s/b/-/b-1.0.0.tgz"));
        assert_eq!(lock[1].integrity.as_deref(), Some("sha512-A=="));
        assert_eq!(lock[1].resolved, None);

        let y1 = "# yarn lockfile v1\n\n\n\"@s/b@1.0.0\":\n  version \"1.0.0\"\n  resolved \"http://h/r/x/@s/b/-/b-1.0.0.tgz#abc\"\n  integrity sha512-B==\n\na@1.0.0, a@^1.0.0:\n  version \"1.0.0\"\n  resolved \"http://h/r/x/a/-/a-1.0.0.tgz#def\"\n  integrity sha512-A==\n";
        let lock = parse_yarn_classic_lock(y1);
        assert_eq!(lock[0].name, "@s/b");
        assert_eq!(lock[0].resolved.as_deref(), Some("http://h/r/x/@s/b/-/b-1.0.0.tgz"));
        assert_eq!(lock[1].name, "a");
        assert_eq!(lock[1].version, "1.0.0");

        let berry = "__metadata:\n  version: 10\n  cacheKey: 10c0\n\n\"@s/b@npm:1.0.0\":\n  version: 1.0.0\n  resolution: \"@s/b@npm:1.0.0\"\n  checksum: 10c0/ab\n  languageName: node\n  linkType: hard\n\n\"c@workspace:.\":\n  version: 0.0.0-use.local\n  resolution: \"c@workspace:.\"\n\n\"a@npm:1.0.0\":\n  version: 1.0.0\n  resolution: \"a@npm:1.0.0::__archiveUrl=http%3A%2F%2Fh%2Fa.tgz\"\n";
        let lock = parse_yarn_berry_lock(berry);
        assert_eq!(lock.len(), 2);
        assert_eq!(lock[0].name, "@s/b");
        assert_eq!(lock[0].checksum.as_deref(), Some("10c0/ab"));
        assert_eq!(lock[1].name, "a");
        assert_eq!(lock[1].resolved.as_deref(), Some("http://h/a.tgz"));

        let bun = "{\n  \"lockfileVersion\": 1,\n  \"packages\": {\n    \"@s/b\": [\"@s/b@1.0.0\", \"http://h/r/x/@s/b/-/b-1.0.0.tgz\", {}, \"sha512-B==\"],\n\n    \"a\": [\"a@1.0.0\", \"\", { \"dependencies\": { \"x\": \"1\", }, }, \"sha512-A==\"],\n  }\n}\n";
        let lock = parse_bun_lock(bun);
        assert_eq!(lock.len(), 2);
        assert_eq!(lock[0].resolved.as_deref(), Some("http://h/r/x/@s/b/-/b-1.0.0.tgz"));
        assert_eq!(lock[1].resolved, None);
        assert_eq!(lock[1].integrity.as_deref(), Some("sha512-A=="));
    }
}
