//! Reading an advisory import: an OSV file (one record or an array of them), a zip of them
//! (osv.dev's per-ecosystem `all.zip`: flat, one `ID.json` per advisory), or a directory
//! tree (a `github/advisory-database` checkout, or a flat folder).
//!
//! All or nothing: anything that makes the source doubtful (an unreadable file, a record
//! that is not OSV, an unsafe or oversized zip entry) refuses the whole import; a sound
//! record this server cannot use is skipped and reported with its id. Only normalized
//! advisories are kept in memory, never the source.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Cursor, Read, Seek};
use std::path::Path;

use serde::de::{self, Deserialize, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::{Advisory, OsvError, Parsed, RawRecord, normalize};

/// One record file or zip entry, uncompressed: real ones are a few KiB.
pub const MAX_ENTRY_BYTES: u64 = 16 << 20;
/// Files or zip entries in one import (osv.dev's npm export has about 230,000).
pub const MAX_ENTRIES: usize = 2_000_000;
/// Bytes read in all, uncompressed.
pub const MAX_TOTAL_BYTES: u64 = 8 << 30;
/// Directory levels below the import path (a GHSA checkout needs 5).
pub const MAX_DEPTH: usize = 16;

/// What an import read. `advisories` has one advisory per id (the newest `modified` when a
/// source has an id twice); aliases are not merged here (`dedupe_aliases` does that).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Import {
    pub advisories: Vec<Advisory>,
    /// Sound records that could not be used, with why.
    pub skipped: Vec<Skipped>,
    /// Withdrawn records and records for other ecosystems.
    pub ignored: usize,
    /// Every record read, whatever became of it.
    pub records: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub id: String,
    /// The file or zip entry (and record number, in an array) it came from.
    pub source: String,
    pub why: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {error}; nothing was imported")]
    Read {
        path: String,
        #[source]
        error: io::Error,
    },
    #[error("{at}: not an OSV record: {detail}; nothing was imported")]
    Malformed { at: String, detail: String },
    #[error("{path}: not a readable zip archive: {detail}; nothing was imported")]
    Zip { path: String, detail: String },
    #[error(
        "{archive}: entry {entry:?} has an unsafe name (absolute, `..`, a backslash or a drive letter); \
         refusing the whole archive"
    )]
    UnsafeName { archive: String, entry: String },
    #[error("{at}: more than {limit} bytes uncompressed; refusing the whole import")]
    EntryTooLarge { at: String, limit: u64 },
    #[error("{at}: more than {limit} files or entries; refusing the whole import")]
    TooManyEntries { at: String, limit: usize },
    #[error("{at}: more than {limit} bytes in all; refusing the whole import")]
    TooMuchData { at: String, limit: u64 },
    #[error("{at}: more than {limit} directories deep; point the import at the advisories folder")]
    TooDeep { at: String, limit: usize },
    #[error("no OSV records found in {0}")]
    Empty(String),
}

/// Reads a file (JSON or a zip, told apart by content) or a directory tree of `*.json`.
/// Symbolic links inside a directory are not followed, nor hidden directories (`.git`).
pub fn import_path(path: &Path) -> Result<Import, ImportError> {
    let shown = path.display().to_string();
    let read_error = |error| ImportError::Read {
        path: shown.clone(),
        error,
    };
    let meta = fs::metadata(path).map_err(read_error)?;
    let mut collector = Collector::default();
    if meta.is_dir() {
        walk(path, &mut collector)?;
        return collector.finish(&shown);
    }
    if meta.len() > MAX_TOTAL_BYTES {
        return Err(ImportError::TooMuchData {
            at: shown,
            limit: MAX_TOTAL_BYTES,
        });
    }
    let mut file = BufReader::new(File::open(path).map_err(read_error)?);
    if is_zip(file.fill_buf().map_err(read_error)?) {
        return import_zip(file, &shown);
    }
    // Streamed: an array of 20,000 records is never held whole.
    collector.count_entry(&shown)?;
    read_records(&mut serde_json::Deserializer::from_reader(file), &shown, &mut collector)?;
    collector.finish(&shown)
}

/// Reads an import already in memory (JSON or a zip); `source` names it in messages.
pub fn import_bytes(bytes: &[u8], source: &str) -> Result<Import, ImportError> {
    if is_zip(bytes) {
        return import_zip(Cursor::new(bytes), source);
    }
    let mut collector = Collector::default();
    collector.count_entry(source)?;
    read_records(&mut serde_json::Deserializer::from_slice(bytes), source, &mut collector)?;
    collector.finish(source)
}

/// Reads a zip of OSV records entry by entry, from anything seekable (a 200 MB `all.zip`
/// is read from its file, one entry in memory at a time). Directories and entries not
/// named `*.json` are ignored; nothing is ever extracted.
pub fn import_zip<R: Read + Seek>(reader: R, source: &str) -> Result<Import, ImportError> {
    let zip_error = |detail: String| ImportError::Zip {
        path: source.to_owned(),
        detail,
    };
    let mut archive = zip::ZipArchive::new(reader).map_err(|e| zip_error(e.to_string()))?;
    if archive.len() > MAX_ENTRIES {
        return Err(ImportError::TooManyEntries {
            at: source.to_owned(),
            limit: MAX_ENTRIES,
        });
    }
    // Names first: an archive that would write outside a folder if extracted is not
    // trusted for anything, so refuse it before reading a byte of data.
    for name in archive.file_names() {
        let name = name.map_err(|e| zip_error(e.to_string()))?;
        if !safe_entry_name(&name) {
            return Err(ImportError::UnsafeName {
                archive: source.to_owned(),
                entry: name.into_owned(),
            });
        }
    }

    let mut collector = Collector::default();
    let mut buffer = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| zip_error(format!("entry {index}: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| zip_error(format!("entry {index}: {e}")))?
            .into_owned();
        if !entry.is_file() || !name.ends_with(".json") {
            continue;
        }
        let at = format!("{source}: {name}");
        collector.count_entry(&at)?;
        buffer.clear();
        // The declared size is the archive's word only: read through a limit instead.
        (&mut entry)
            .take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut buffer)
            .map_err(|e| zip_error(format!("{name}: {e}")))?;
        collector.count_bytes(buffer.len() as u64, &at)?;
        read_records(&mut serde_json::Deserializer::from_slice(&buffer), &at, &mut collector)?;
    }
    collector.finish(source)
}

fn is_zip(head: &[u8]) -> bool {
    // Every zip starts with a "PK" signature; no JSON text does.
    head.starts_with(b"PK")
}

/// Whether a zip entry name stays inside the folder it would be extracted to.
fn safe_entry_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    !(name.starts_with('/') || name.contains('\\') || name.contains('\0') || drive)
        && name.split('/').all(|part| part != "..")
}

/// Depth-first, each directory's entries in name order, files before the directories.
fn walk(root: &Path, collector: &mut Collector) -> Result<(), ImportError> {
    let mut pending = vec![(root.to_path_buf(), 0usize)];
    let mut buffer = Vec::new();
    while let Some((dir, depth)) = pending.pop() {
        let shown = dir.display().to_string();
        let read_error = |error| ImportError::Read {
            path: shown.clone(),
            error,
        };
        let mut entries = fs::read_dir(&dir)
            .map_err(read_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_error)?;
        entries.sort_by_key(|e| e.file_name());
        let mut subdirectories = Vec::new();
        for entry in entries {
            let path = entry.path();
            let shown = path.display().to_string();
            // The entry's own type: a symbolic link is a link here, never what it points at.
            let kind = entry.file_type().map_err(|error| ImportError::Read {
                path: shown.clone(),
                error,
            })?;
            if kind.is_dir() {
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                if depth + 1 > MAX_DEPTH {
                    return Err(ImportError::TooDeep {
                        at: shown,
                        limit: MAX_DEPTH,
                    });
                }
                subdirectories.push(path);
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "json") {
                collector.count_entry(&shown)?;
                buffer.clear();
                let file = File::open(&path).map_err(|error| ImportError::Read {
                    path: shown.clone(),
                    error,
                })?;
                file.take(MAX_ENTRY_BYTES + 1)
                    .read_to_end(&mut buffer)
                    .map_err(|error| ImportError::Read {
                        path: shown.clone(),
                        error,
                    })?;
                collector.count_bytes(buffer.len() as u64, &shown)?;
                read_records(&mut serde_json::Deserializer::from_slice(&buffer), &shown, collector)?;
            }
        }
        pending.extend(subdirectories.into_iter().rev().map(|d| (d, depth + 1)));
    }
    Ok(())
}

/// What an import has read so far, and how much, against the limits.
#[derive(Default)]
struct Collector {
    import: Import,
    /// Advisory id → its index in `import.advisories`.
    by_id: HashMap<String, usize>,
    entries: usize,
    bytes: u64,
}

impl Collector {
    fn count_entry(&mut self, at: &str) -> Result<(), ImportError> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(ImportError::TooManyEntries {
                at: at.to_owned(),
                limit: MAX_ENTRIES,
            });
        }
        Ok(())
    }

    fn count_bytes(&mut self, bytes: u64, at: &str) -> Result<(), ImportError> {
        if bytes > MAX_ENTRY_BYTES {
            return Err(ImportError::EntryTooLarge {
                at: at.to_owned(),
                limit: MAX_ENTRY_BYTES,
            });
        }
        self.bytes += bytes;
        if self.bytes > MAX_TOTAL_BYTES {
            return Err(ImportError::TooMuchData {
                at: at.to_owned(),
                limit: MAX_TOTAL_BYTES,
            });
        }
        Ok(())
    }

    fn add(&mut self, raw: RawRecord, at: &str) -> Result<(), ImportError> {
        self.import.records += 1;
        match normalize(raw) {
            Ok(Parsed::Advisory(advisory)) => match self.by_id.get(&advisory.id) {
                Some(&i) => {
                    if advisory.modified > self.import.advisories[i].modified {
                        self.import.advisories[i] = advisory;
                    }
                }
                None => {
                    self.by_id.insert(advisory.id.clone(), self.import.advisories.len());
                    self.import.advisories.push(advisory);
                }
            },
            Ok(Parsed::Ignored(_)) => self.import.ignored += 1,
            Err(OsvError::Unusable { id, why }) => {
                tracing::warn!(advisory = %id, source = at, "skipped: {why}");
                self.import.skipped.push(Skipped {
                    id,
                    source: at.to_owned(),
                    why,
                });
            }
            Err(OsvError::Malformed(detail)) => {
                return Err(ImportError::Malformed {
                    at: at.to_owned(),
                    detail,
                });
            }
        }
        Ok(())
    }

    fn finish(self, source: &str) -> Result<Import, ImportError> {
        if self.import.records == 0 {
            return Err(ImportError::Empty(source.to_owned()));
        }
        Ok(self.import)
    }
}

/// Reads one JSON text holding a record or an array of records, one record at a time.
fn read_records<'de, R: serde_json::de::Read<'de>>(
    json: &mut serde_json::Deserializer<R>,
    at: &str,
    collector: &mut Collector,
) -> Result<(), ImportError> {
    let mut stop = None;
    let read = Records {
        at,
        collector,
        stop: &mut stop,
    }
    .deserialize(&mut *json)
    .and_then(|()| json.end());
    match (read, stop) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(Stop::Refused(e))) => Err(e),
        (Err(e), stop) => {
            let at = match stop {
                Some(Stop::At(record)) => record,
                _ => at.to_owned(),
            };
            if e.is_io() {
                Err(ImportError::Read {
                    path: at,
                    error: io::Error::other(e),
                })
            } else {
                Err(ImportError::Malformed {
                    at,
                    detail: e.to_string(),
                })
            }
        }
    }
}

/// Why `Records` stopped early (serde errors carry no payload of ours).
enum Stop {
    /// The collector refused a record.
    Refused(ImportError),
    /// JSON or schema trouble inside this record of an array.
    At(String),
}

struct Records<'a> {
    at: &'a str,
    collector: &'a mut Collector,
    stop: &'a mut Option<Stop>,
}

impl<'de> DeserializeSeed<'de> for Records<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an OSV record or an array of OSV records")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let raw = RawRecord::deserialize(de::value::MapAccessDeserializer::new(map))?;
        self.collector.add(raw, self.at).map_err(|e| {
            *self.stop = Some(Stop::Refused(e));
            de::Error::custom("refused")
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for number in 1.. {
            let at = format!("{}, record {number}", self.at);
            match seq.next_element::<RawRecord>() {
                Ok(Some(raw)) => self.collector.add(raw, &at).map_err(|e| {
                    *self.stop = Some(Stop::Refused(e));
                    de::Error::custom("refused")
                })?,
                Ok(None) => break,
                Err(e) => {
                    *self.stop = Some(Stop::At(at));
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::PathBuf;

    use super::*;
    use crate::severity::Severity;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/osv")
    }

    /// A fresh empty directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gatehouse-policy-import-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn record(id: &str, package: &str, fixed: &str) -> String {
        serde_json::json!({
            "schema_version": "1.7.0",
            "id": id,
            "modified": "2025-01-01T00:00:00Z",
            "summary": format!("Advisory for {package}"),
            "affected": [{"package": {"ecosystem": "npm", "name": package},
                          "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}],
            "database_specific": {"severity": "HIGH"},
        })
        .to_string()
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            writer.start_file(*name, options).expect("start entry");
            writer.write_all(data).expect("write entry");
        }
        writer.finish().expect("finish zip").into_inner()
    }

    #[test]
    fn a_single_file() {
        let path = fixtures().join("github-reviewed/2021/05/GHSA-35jh-r3h4-6jhm/GHSA-35jh-r3h4-6jhm.json");
        let import = import_path(&path).expect("import");
        assert_eq!((import.records, import.ignored, import.skipped.len()), (1, 0, 0));
        assert_eq!(import.advisories[0].id, "GHSA-35jh-r3h4-6jhm");
        assert!(import.advisories[0].affects("lodash", "4.17.20"));
    }

    #[test]
    fn an_array_with_a_skipped_and_an_ignored_record() {
        let dir = fixtures();
        let read = |p: &str| fs::read_to_string(dir.join(p)).expect("fixture");
        let array = format!(
            "[{}, {}, {}]",
            read("malicious/MAL-2025-6974.json"),
            read("bad/invalid-range.json"),
            read("bad/withdrawn.json")
        );
        let scratch = scratch("array");
        let path = scratch.join("records.json");
        fs::write(&path, &array).expect("write");
        for import in [
            import_path(&path).expect("file"),
            import_bytes(array.as_bytes(), "body").expect("bytes"),
        ] {
            assert_eq!(import.records, 3);
            assert_eq!(import.ignored, 1, "withdrawn");
            assert_eq!(import.advisories.len(), 1);
            assert_eq!(import.skipped.len(), 1);
            assert_eq!(import.skipped[0].id, "GHSA-xxxx-bad0-rnge");
            assert!(
                import.skipped[0].source.ends_with("record 2"),
                "{:?}",
                import.skipped[0]
            );
            assert!(import.skipped[0].why.contains("one point two"));
        }
        let _ = fs::remove_dir_all(scratch);
    }

    #[test]
    fn a_nested_advisory_database_checkout() {
        let import = import_path(&fixtures().join("github-reviewed")).expect("import");
        let mut ids: Vec<&str> = import.advisories.iter().map(|a| a.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            [
                "GHSA-29mw-wpgm-hmr9",
                "GHSA-35jh-r3h4-6jhm",
                "GHSA-mh6f-8j2x-4483",
                "GHSA-p6mc-m468-83gw"
            ]
        );
        assert_eq!(import.records, 4);
    }

    #[test]
    fn one_malformed_record_refuses_the_whole_directory() {
        // The fixtures folder holds bad/malformed.json next to the good records.
        let e = import_path(&fixtures()).expect_err("malformed");
        let text = e.to_string();
        assert!(matches!(e, ImportError::Malformed { .. }), "{text}");
        assert!(
            text.contains("malformed.json") && text.contains("nothing was imported"),
            "{text}"
        );

        let scratch = scratch("bad-array");
        let path = scratch.join("records.json");
        let bad = format!(
            "[{}, {{\"id\": \"GHSA-2\", \"modified\": 7}}]",
            record("GHSA-1", "a", "1.0.0")
        );
        fs::write(&path, &bad).expect("write");
        let e = import_path(&path).expect_err("ill-typed modified");
        assert!(e.to_string().contains("records.json, record 2"), "{e}");
        let bad = format!(
            "[{}, {{\"id\": \"GHSA-3\", \"modified\": \"yesterday\"}}]",
            record("GHSA-1", "a", "1.0.0")
        );
        let e = import_bytes(bad.as_bytes(), "body").expect_err("not a time");
        assert!(
            e.to_string()
                .starts_with("body, record 2: not an OSV record: GHSA-3: modified"),
            "{e}"
        );
        let _ = fs::remove_dir_all(scratch);
    }

    #[test]
    fn symlinks_hidden_and_other_files_are_not_read() {
        let scratch = scratch("links");
        let outside = scratch.join("outside");
        let inside = scratch.join("inside");
        fs::create_dir_all(&outside).expect("dir");
        fs::create_dir_all(inside.join(".git")).expect("dir");
        fs::write(outside.join("GHSA-out.json"), record("GHSA-out", "x", "1.0.0")).expect("write");
        fs::write(inside.join(".git/GHSA-git.json"), record("GHSA-git", "x", "1.0.0")).expect("write");
        fs::write(inside.join("GHSA-in.json"), record("GHSA-in", "x", "1.0.0")).expect("write");
        fs::write(inside.join("notes.txt"), "not json").expect("write");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&outside, inside.join("linked-dir")).expect("symlink");
            std::os::unix::fs::symlink(outside.join("GHSA-out.json"), inside.join("linked.json")).expect("symlink");
        }
        let import = import_path(&inside).expect("import");
        let ids: Vec<&str> = import.advisories.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["GHSA-in"]);
        let _ = fs::remove_dir_all(scratch);
    }

    #[test]
    fn too_deep_and_empty_imports_are_refused() {
        let scratch = scratch("deep");
        let mut deep = scratch.clone();
        for level in 0..=MAX_DEPTH {
            deep = deep.join(format!("d{level}"));
        }
        fs::create_dir_all(&deep).expect("dirs");
        let e = import_path(&scratch).expect_err("too deep");
        assert!(matches!(e, ImportError::TooDeep { .. }), "{e}");
        let empty = scratch.join("empty");
        fs::create_dir_all(&empty).expect("dir");
        let e = import_path(&empty).expect_err("empty");
        assert_eq!(e.to_string(), format!("no OSV records found in {}", empty.display()));
        assert!(matches!(import_bytes(b"[]", "body"), Err(ImportError::Empty(_))));
        assert!(matches!(import_bytes(b"", "body"), Err(ImportError::Malformed { .. })));
        assert!(matches!(
            import_bytes(b"42", "body"),
            Err(ImportError::Malformed { .. })
        ));
        assert!(matches!(
            import_path(&scratch.join("missing.json")),
            Err(ImportError::Read { .. })
        ));
        let _ = fs::remove_dir_all(scratch);
    }

    #[test]
    fn a_zip_of_five_thousand_records() {
        let records: Vec<(String, String)> = (0..5000)
            .map(|i| {
                let id = format!("GHSA-test-{i:04}-zzzz");
                let body = record(&id, &format!("package-{}", i % 700), &format!("1.{}.0", i % 13));
                (format!("{id}.json"), body)
            })
            .collect();
        let mut entries: Vec<(&str, &[u8])> = records.iter().map(|(n, b)| (n.as_str(), b.as_bytes())).collect();
        entries.push(("README.md", b"ignored"));
        entries.push(("modified_id.csv", b"2025-01-01T00:00:00Z,GHSA-test-0000-zzzz"));
        let bytes = zip_of(&entries);

        let import = import_bytes(&bytes, "all.zip").expect("import");
        assert_eq!(
            (import.records, import.advisories.len(), import.skipped.len()),
            (5000, 5000, 0)
        );
        let first = &import.advisories[0];
        assert_eq!(first.id, "GHSA-test-0000-zzzz");
        assert_eq!(first.severity, Severity::High);
        assert!(first.affects("package-0", "0.9.0"));

        // From a file, read through `Seek` rather than loaded whole.
        let scratch = scratch("zip");
        let path = scratch.join("all.json.download");
        fs::write(&path, &bytes).expect("write");
        assert_eq!(import_path(&path).expect("import").advisories.len(), 5000);
        let _ = fs::remove_dir_all(scratch);
    }

    #[test]
    fn unsafe_zip_names_refuse_the_archive() {
        let good = record("GHSA-1", "a", "1.0.0");
        for name in [
            "../GHSA-1.json",
            "a/../../GHSA-1.json",
            "/etc/GHSA-1.json",
            "a\\GHSA-1.json",
            "C:GHSA-1.json",
        ] {
            let bytes = zip_of(&[("GHSA-0.json", good.as_bytes()), (name, good.as_bytes())]);
            match import_bytes(&bytes, "all.zip") {
                Err(ImportError::UnsafeName { archive, entry }) => {
                    assert_eq!((archive.as_str(), entry.as_str()), ("all.zip", name));
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(safe_entry_name("npm/GHSA-1.json") && safe_entry_name("a..b.json"));
    }

    #[test]
    fn a_zip_bomb_entry_is_refused_whatever_it_declares() {
        let bomb = vec![b' '; (MAX_ENTRY_BYTES + 10) as usize];
        let bytes = zip_of(&[
            ("GHSA-0.json", record("GHSA-0", "a", "1.0.0").as_bytes()),
            ("GHSA-1.json", &bomb),
        ]);
        assert!(bytes.len() < 200_000, "compresses well: {}", bytes.len());
        let e = import_bytes(&bytes, "all.zip").expect_err("bomb");
        assert!(matches!(e, ImportError::EntryTooLarge { .. }), "{e}");
        assert!(e.to_string().contains("all.zip: GHSA-1.json"), "{e}");

        // The same entry claiming to be small, in both headers: still refused.
        let mut lying = bytes.clone();
        let declared = (MAX_ENTRY_BYTES as u32 + 10).to_le_bytes();
        let mut patched = 0;
        for at in 0..lying.len() - 4 {
            if lying[at..at + 4] == declared {
                lying[at..at + 4].copy_from_slice(&100u32.to_le_bytes());
                patched += 1;
            }
        }
        assert_eq!(patched, 2, "local and central header");
        let e = import_bytes(&lying, "all.zip").expect_err("lying bomb");
        assert!(e.to_string().contains("GHSA-1.json"), "{e}");
    }

    #[test]
    fn a_malformed_zip_entry_is_named() {
        let bytes = zip_of(&[
            ("GHSA-0.json", record("GHSA-0", "a", "1.0.0").as_bytes()),
            ("advisories/GHSA-1.json", b"{\"id\": \"GHSA-1\""),
        ]);
        let e = import_bytes(&bytes, "all.zip").expect_err("malformed");
        assert!(
            e.to_string()
                .starts_with("all.zip: advisories/GHSA-1.json: not an OSV record"),
            "{e}"
        );
        let e = import_bytes(b"PK\x03\x04 not really", "upload").expect_err("not a zip");
        assert!(matches!(e, ImportError::Zip { .. }), "{e}");
    }

    #[test]
    fn an_id_seen_twice_keeps_the_newest() {
        let old = record("GHSA-1", "a", "1.0.0");
        let new = record("GHSA-1", "a", "2.0.0").replace("2025-01-01", "2025-06-01");
        for body in [format!("[{old}, {new}]"), format!("[{new}, {old}]")] {
            let import = import_bytes(body.as_bytes(), "body").expect("import");
            assert_eq!((import.records, import.advisories.len()), (2, 1));
            assert_eq!(import.advisories[0].vulnerable_versions("a"), "<2.0.0");
        }
    }
}
