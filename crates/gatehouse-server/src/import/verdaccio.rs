//! Reads a Verdaccio storage folder, as Verdaccio 4 to 6 write it: a folder a package
//! (scoped ones under `@scope/`), each with Verdaccio's own `package.json` document
//! and the tarballs it holds, and `.verdaccio-db.json`, the list of packages published
//! there. Nothing here writes; every read is bounded, and only plain file names that
//! the document itself records are opened.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use gatehouse_npm::name::PackageName;
use gatehouse_npm::version::Version;
use serde_json::{Map, Value};

/// Verdaccio's documents hold every version's manifest and the readme; a larger one is
/// not a package document.
pub const MAX_DOCUMENT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum VerdaccioError {
    #[error("cannot read {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error(
        "{0} is not a Verdaccio storage folder: it has no .verdaccio-db.json and no package folders \
         (point at the folder Verdaccio's `storage:` setting names)"
    )]
    NotStorage(PathBuf),
    #[error("{path} is not Verdaccio's database: {cause}")]
    Database { path: PathBuf, cause: String },
}

/// An opened storage folder.
pub struct Storage {
    root: PathBuf,
    /// The packages published to Verdaccio (its database's `list`); `None` without a
    /// database, when each version's own record says whether it was published there.
    listed: Option<BTreeSet<String>>,
}

/// A package's folder.
#[derive(Debug, Clone)]
pub struct PackageDir {
    /// As the folder names it (`@scope/name`); checked when its document is read.
    pub name: String,
    pub dir: PathBuf,
    /// Named in `.verdaccio-db.json` (or there is none): published there, not only
    /// cached. Its versions' own records still tell cached ones apart.
    pub listed: bool,
}

/// A package document, as far as an import needs it.
#[derive(Debug)]
pub struct Document {
    pub name: PackageName,
    /// In the order they were published.
    pub versions: Vec<StoredVersion>,
    pub dist_tags: BTreeMap<String, String>,
    /// The user names the newest version records as its maintainers (Verdaccio 6
    /// records none for npm 9 and later).
    pub maintainers: Vec<String>,
}

#[derive(Debug)]
pub struct StoredVersion {
    pub version: Version,
    pub manifest: Map<String, Value>,
    /// The tarball's file name in the package's folder.
    pub file: String,
    pub published_at: Option<i64>,
    /// `Some(uplink)` when Verdaccio holds it as a cached copy from that uplink.
    pub cached_from: Option<String>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VerdaccioError + '_ {
    move |cause| VerdaccioError::Io {
        path: path.to_owned(),
        cause,
    }
}

impl Storage {
    pub async fn open(root: &Path) -> Result<Storage, VerdaccioError> {
        let db = root.join(".verdaccio-db.json");
        let listed = match tokio::fs::read(&db).await {
            Ok(bytes) => Some(parse_database(&bytes).map_err(|cause| VerdaccioError::Database {
                path: db.clone(),
                cause,
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&db)(e)),
        };
        tokio::fs::metadata(root).await.map_err(io(root))?;
        Ok(Storage {
            root: root.to_owned(),
            listed,
        })
    }

    /// Every folder that holds a package document, by name.
    pub async fn packages(&self) -> Result<Vec<PackageDir>, VerdaccioError> {
        let mut found = Vec::new();
        for (entry, dir) in subfolders(&self.root).await? {
            if let Some(scope) = entry.strip_prefix('@') {
                for (inner, dir) in subfolders(&dir).await? {
                    self.push_package(&mut found, format!("@{scope}/{inner}"), dir).await;
                }
            } else {
                self.push_package(&mut found, entry, dir).await;
            }
        }
        if found.is_empty() && self.listed.as_ref().is_none_or(BTreeSet::is_empty) {
            return Err(VerdaccioError::NotStorage(self.root.clone()));
        }
        // Listed packages whose folder is gone are reported when their document is read.
        for name in self.listed.iter().flatten() {
            if !found.iter().any(|p| &p.name == name) {
                found.push(PackageDir {
                    name: name.clone(),
                    dir: self.root.join(name),
                    listed: true,
                });
            }
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    async fn push_package(&self, found: &mut Vec<PackageDir>, name: String, dir: PathBuf) {
        if tokio::fs::try_exists(dir.join("package.json")).await.unwrap_or(false) {
            found.push(PackageDir {
                listed: self.listed.as_ref().is_none_or(|listed| listed.contains(&name)),
                name,
                dir,
            });
        }
    }
}

/// A folder's subfolders, by name, skipping hidden ones (Verdaccio's own files).
async fn subfolders(dir: &Path) -> Result<Vec<(String, PathBuf)>, VerdaccioError> {
    let mut entries = tokio::fs::read_dir(dir).await.map_err(io(dir))?;
    let mut out = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(io(dir))? {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // A symlink is not followed: the import reads only what lies in the folder.
        let is_dir = entry.file_type().await.is_ok_and(|t| t.is_dir());
        if is_dir && !name.starts_with('.') {
            out.push((name, entry.path()));
        }
    }
    Ok(out)
}

impl PackageDir {
    pub async fn read_document(&self) -> Result<Document, String> {
        let path = self.dir.join("package.json");
        let bytes = read_bounded(&path, MAX_DOCUMENT_BYTES).await?;
        parse_document(&self.name, &bytes)
    }

    /// The tarball `file`, at most `limit` bytes.
    pub async fn read_tarball(&self, file: &str, limit: u64) -> Result<Bytes, String> {
        read_bounded(&self.dir.join(file), limit).await.map(Bytes::from)
    }
}

async fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let meta = tokio::fs::symlink_metadata(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.len() > limit {
        return Err(format!(
            "{} is {} bytes, more than the {limit} this registry accepts",
            path.display(),
            meta.len()
        ));
    }
    tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn parse_database(bytes: &[u8]) -> Result<BTreeSet<String>, String> {
    #[derive(serde::Deserialize)]
    struct Database {
        #[serde(default)]
        list: Vec<String>,
    }
    let db: Database = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(db.list.into_iter().collect())
}

/// Reads Verdaccio's document for the package in folder `folder_name`. Versions that
/// cannot be used are left out only when the document says why they can't be read
/// (no parsable version); everything else is kept for admission to judge.
pub fn parse_document(folder_name: &str, bytes: &[u8]) -> Result<Document, String> {
    let doc: Map<String, Value> =
        serde_json::from_slice(bytes).map_err(|e| format!("package.json is not JSON: {e}"))?;
    let name_text = doc.get("name").and_then(Value::as_str).unwrap_or(folder_name);
    if name_text != folder_name {
        return Err(format!(
            "package.json names {name_text:?}, but its folder is {folder_name:?}"
        ));
    }
    let name = PackageName::parse(name_text).map_err(|e| e.to_string())?;
    let object = |key: &str| doc.get(key).and_then(Value::as_object);
    let attachments = object("_attachments");
    let distfiles = object("_distfiles");
    let times = object("time");
    let mut versions = Vec::new();
    for (text, manifest) in object("versions").into_iter().flatten() {
        let (Ok(version), Some(manifest)) = (Version::parse(text), manifest.as_object()) else {
            return Err(format!("version {text:?} is not a valid version with a manifest"));
        };
        let file = tarball_file(&name, &version, manifest)?;
        let cached_from = if attachments.is_some_and(|a| a.contains_key(&file)) {
            None
        } else {
            Some(
                distfiles
                    .and_then(|d| d.get(&file))
                    .and_then(|d| d.get("registry"))
                    .and_then(Value::as_str)
                    .unwrap_or("uplink")
                    .to_owned(),
            )
        };
        let published_at = times
            .and_then(|t| t.get(text))
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis());
        versions.push(StoredVersion {
            version,
            manifest: manifest.clone(),
            file,
            published_at,
            cached_from,
        });
    }
    versions.sort_by(|a, b| {
        (a.published_at.unwrap_or(i64::MAX), a.version.semver())
            .cmp(&(b.published_at.unwrap_or(i64::MAX), b.version.semver()))
    });
    let dist_tags = object("dist-tags")
        .into_iter()
        .flatten()
        .filter_map(|(tag, v)| Some((tag.clone(), v.as_str()?.to_owned())))
        .collect();
    let maintainers = versions
        .last()
        .and_then(|v| v.manifest.get("maintainers"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    Ok(Document {
        name,
        versions,
        dist_tags,
        maintainers,
    })
}

/// The tarball's file name: the last segment of `dist.tarball` (Verdaccio stores the
/// tarball under it), and only a plain name: nothing a path could climb out with.
fn tarball_file(name: &PackageName, version: &Version, manifest: &Map<String, Value>) -> Result<String, String> {
    let from_url = manifest
        .get("dist")
        .and_then(|d| d.get("tarball"))
        .and_then(Value::as_str)
        .and_then(|url| url.rsplit('/').next())
        .filter(|f| !f.is_empty());
    let file = match from_url {
        Some(file) => file.to_owned(),
        None => format!("{}-{version}.tgz", name.basename()),
    };
    let plain = !file.starts_with('.') && !file.contains(['/', '\\', '\0']) && file.ends_with(".tgz");
    if !plain {
        return Err(format!(
            "version {version} names the tarball {file:?}, which is not a plain .tgz file name"
        ));
    }
    Ok(file)
}

/// One user of an htpasswd file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtpasswdUser {
    pub name: String,
    pub hash: String,
}

/// Reads an htpasswd file (`name:hash[:comment]` a line, as Verdaccio writes it).
/// A line that is not of that shape is returned as an error naming its number.
pub fn parse_htpasswd(text: &str) -> Vec<Result<HtpasswdUser, String>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(n, line)| {
            let mut fields = line.trim_end_matches('\r').splitn(3, ':');
            match (fields.next(), fields.next()) {
                (Some(name), Some(hash)) if !name.is_empty() && !hash.is_empty() => Ok(HtpasswdUser {
                    name: name.to_owned(),
                    hash: hash.to_owned(),
                }),
                _ => Err(format!("line {}: expected NAME:HASH", n + 1)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document(extra: Value) -> Vec<u8> {
        let mut doc = serde_json::json!({
            "name": "@acme/lib",
            "versions": {
                "1.0.0": {"name": "@acme/lib", "version": "1.0.0",
                          "dist": {"tarball": "http://127.0.0.1:4873/@acme/lib/-/@acme/lib-1.0.0.tgz"}},
                "0.9.0": {"name": "@acme/lib", "version": "0.9.0",
                          "dist": {"tarball": "https://registry.npmjs.org/@acme/lib/-/lib-0.9.0.tgz"},
                          "maintainers": [{"name": "bob"}]}
            },
            "time": {"1.0.0": "2026-01-02T00:00:00.000Z", "0.9.0": "2026-01-01T00:00:00.000Z"},
            "dist-tags": {"latest": "1.0.0", "old": "0.9.0"},
            "_attachments": {"lib-1.0.0.tgz": {"shasum": "x"}},
            "_distfiles": {"lib-0.9.0.tgz": {"url": "https://registry.npmjs.org/x", "registry": "npmjs"}}
        });
        if let (Some(doc), Value::Object(extra)) = (doc.as_object_mut(), extra) {
            doc.extend(extra);
        }
        serde_json::to_vec(&doc).expect("json")
    }

    #[test]
    fn a_document_yields_its_versions_in_publish_order_with_what_verdaccio_holds() {
        let doc = parse_document("@acme/lib", &document(Value::Null)).expect("parses");
        assert_eq!(doc.name.to_string(), "@acme/lib");
        let versions: Vec<_> = doc
            .versions
            .iter()
            .map(|v| (v.version.as_str(), v.file.as_str(), v.cached_from.as_deref()))
            .collect();
        assert_eq!(
            versions,
            [
                ("0.9.0", "lib-0.9.0.tgz", Some("npmjs")),
                ("1.0.0", "lib-1.0.0.tgz", None)
            ]
        );
        assert_eq!(doc.versions[1].published_at, Some(1_767_312_000_000));
        assert_eq!(doc.dist_tags.get("old").map(String::as_str), Some("0.9.0"));
        assert!(doc.maintainers.is_empty(), "the newest version names none");
    }

    #[test]
    fn documents_that_lie_or_are_broken_are_refused() {
        let renamed = parse_document("other", &document(Value::Null)).expect_err("wrong folder");
        assert!(renamed.contains("but its folder is \"other\""), "{renamed}");
        let err = parse_document("@acme/lib", b"{not json").expect_err("broken");
        assert!(err.starts_with("package.json is not JSON"), "{err}");
        let bad_version = serde_json::json!({"name": "@acme/lib", "versions": {"one": {}}});
        let err = parse_document("@acme/lib", &serde_json::to_vec(&bad_version).expect("json")).expect_err("version");
        assert!(err.contains("\"one\" is not a valid version"), "{err}");
    }

    #[test]
    fn a_tarball_is_only_ever_a_plain_file_in_the_package_folder() {
        let name = PackageName::parse("@acme/lib").expect("name");
        let version = Version::parse("1.0.0").expect("version");
        let file = |tarball: Option<&str>| {
            let manifest = match tarball {
                Some(url) => serde_json::json!({"dist": {"tarball": url}}),
                None => serde_json::json!({}),
            };
            tarball_file(&name, &version, manifest.as_object().expect("object"))
        };
        assert_eq!(
            file(Some("http://x/@acme/lib/-/@acme/lib-1.0.0.tgz")).as_deref(),
            Ok("lib-1.0.0.tgz")
        );
        assert_eq!(
            file(Some("http://x/-/../../etc/passwd.tgz")).as_deref(),
            Ok("passwd.tgz")
        );
        assert_eq!(file(None).as_deref(), Ok("lib-1.0.0.tgz"));
        for refused in [
            "http://x/-/..",
            "http://x/-/..%2f..%2fsecret.tgz",
            "http://x/-/lib.tar",
            "a\\..\\b.tgz",
        ] {
            let err = file(Some(refused)).expect_err(refused);
            assert!(err.contains("not a plain .tgz file name"), "{err}");
        }
    }

    #[tokio::test]
    async fn without_a_database_each_version_says_whether_it_was_published_there() {
        let root = tempfile::tempdir().expect("tempdir");
        for (name, attachments) in [("local", json!({"local-1.0.0.tgz": {}})), ("cached", json!({}))] {
            let dir = root.path().join(name);
            std::fs::create_dir_all(&dir).expect("dir");
            let doc = json!({"name": name, "versions": {"1.0.0": {"name": name, "version": "1.0.0"}},
                             "_attachments": attachments});
            std::fs::write(dir.join("package.json"), doc.to_string()).expect("doc");
        }
        std::fs::create_dir_all(root.path().join(".hidden")).expect("hidden");
        let storage = Storage::open(root.path()).await.expect("opens");
        let packages = storage.packages().await.expect("packages");
        let names: Vec<_> = packages.iter().map(|p| (p.name.as_str(), p.listed)).collect();
        assert_eq!(names, [("cached", true), ("local", true)]);
        let cached = packages[0].read_document().await.expect("doc");
        assert_eq!(cached.versions[0].cached_from.as_deref(), Some("uplink"));
        let local = packages[1].read_document().await.expect("doc");
        assert_eq!(local.versions[0].cached_from, None);
        let empty = tempfile::tempdir().expect("tempdir");
        let err = Storage::open(empty.path())
            .await
            .expect("opens")
            .packages()
            .await
            .expect_err("empty");
        assert!(err.to_string().contains("is not a Verdaccio storage folder"), "{err}");
    }

    #[test]
    fn htpasswd_lines_keep_name_and_hash_and_name_the_broken_ones() {
        let parsed = parse_htpasswd(
            "alice:$2a$10$abc:autocreated 2026-12-02T05:23:01Z\n\n# note\nbob:{SHA}xyz=\nbroken\n:nohash\n",
        );
        assert_eq!(
            parsed,
            [
                Ok(HtpasswdUser {
                    name: "alice".into(),
                    hash: "$2a$10$abc".into()
                }),
                Ok(HtpasswdUser {
                    name: "bob".into(),
                    hash: "{SHA}xyz=".into()
                }),
                Err("line 5: expected NAME:HASH".into()),
                Err("line 6: expected NAME:HASH".into()),
            ]
        );
    }
}
