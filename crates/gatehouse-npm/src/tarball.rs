//! Bounded inspection of an npm package tarball (`.tgz`).
//!
//! [`inspect`] reads the whole archive without extracting it: it refuses gzip bombs, unsafe
//! paths, links and devices, and returns the parsed `package.json` with the facts a packument
//! needs. npm unpacks tarballs with node-tar, so wherever the tar crate and node-tar could read
//! the same bytes differently (a lone zero block, a second gzip member, ambiguous extended
//! headers, a directory with data) the archive is refused or read the way node-tar reads it;
//! otherwise a package could show us one `package.json` and npm another.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read};
use std::rc::Rc;

use flate2::read::MultiGzDecoder;
use serde_json::{Map, Value};
use tar::{Archive, Entry, EntryType};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Tar headers and data are laid out in 512-byte blocks.
const BLOCK: u64 = 512;

/// Decompressed bytes that belong to no entry: the zero blocks that end an archive (tar pads
/// archives to 10 KiB records) and any zero blocks between entries.
const PADDING_ALLOWANCE: u64 = 64 * 1024;

/// PAX records and GNU long names hold a path and a few attributes; nothing legitimate is this big.
const MAX_EXTENSION_BYTES: u64 = 64 * 1024;

/// A README bigger than this is left out (it is shown, not needed to install).
const MAX_README_BYTES: u64 = 256 * 1024;

/// Longest entry path or PAX key quoted in an error message.
const MAX_SHOWN_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarballLimits {
    /// Total size of all entries' data once decompressed.
    pub max_unpacked_bytes: u64,
    /// Entries of any kind, extension headers included.
    pub max_entries: u64,
    pub max_package_json_bytes: u64,
}

impl Default for TarballLimits {
    fn default() -> Self {
        Self {
            max_unpacked_bytes: 512 * 1024 * 1024,
            max_entries: 100_000,
            max_package_json_bytes: 1024 * 1024,
        }
    }
}

/// What a packument needs to know about a tarball.
#[derive(Debug, Clone, PartialEq)]
pub struct TarballInfo {
    /// The package's `package.json`.
    pub manifest: Map<String, Value>,
    /// Number of regular files (`dist.fileCount`).
    pub file_count: u64,
    /// Sum of the regular files' sizes (`dist.unpackedSize`).
    pub unpacked_size: u64,
    /// `npm-shrinkwrap.json` in the package folder (`_hasShrinkwrap`).
    pub has_shrinkwrap: bool,
    /// `binding.gyp` in the package folder: npm then runs `node-gyp rebuild` on install.
    pub has_binding_gyp: bool,
    /// The package folder's README (`README.md`, `readme`, …), if not too large:
    /// npm ≥ 7 no longer sends it with a publish, so the registry reads it here.
    pub readme: Option<Readme>,
}

/// A README file found in a tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readme {
    pub file: String,
    /// Its text (invalid UTF-8 replaced).
    pub text: String,
}

/// How much `file` is preferred as the README: lower is better, `None` is not one.
fn readme_rank(file: &str) -> Option<u8> {
    let lower = file.to_ascii_lowercase();
    match lower.as_str() {
        "readme.md" => Some(0),
        "readme.markdown" => Some(1),
        "readme" => Some(2),
        "readme.txt" => Some(3),
        _ if lower.starts_with("readme.") && !lower[7..].contains('/') => Some(4),
        _ => None,
    }
}

/// Why a tarball was refused. The messages are shown to npm users as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TarballError {
    #[error("tarball is not gzip-compressed")]
    NotGzip,
    #[error("tarball is corrupt: {0}")]
    Corrupt(String),
    #[error("tarball unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("tarball has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("tarball has more than {PADDING_ALLOWANCE} bytes of padding or data outside its entries")]
    UnaccountedData,
    #[error("tarball has an unsupported extended header: {0}")]
    ExtendedHeader(ExtendedHeaderProblem),
    #[error("tarball entry {path:?} {problem}")]
    UnsafePath { path: String, problem: PathProblem },
    #[error("tarball entry {path:?} is a {kind}, which npm packages may not contain")]
    ForbiddenEntry { path: String, kind: ForbiddenKind },
    #[error("tarball entry {path:?} has unsupported type {type_flag:?}")]
    UnsupportedEntryType { path: String, type_flag: char },
    #[error("tarball entry {path:?} is a directory but has {size} bytes of data")]
    DirectoryWithData { path: String, size: u64 },
    #[error("tarball entry {path:?} is not inside a package folder")]
    NotInFolder { path: String },
    #[error("tarball entry {path:?} is outside the package folder \"{root}/\"")]
    OutsideRoot { path: String, root: String },
    #[error("tarball contains no files")]
    Empty,
    #[error("tarball has no {root}/package.json")]
    MissingPackageJson { root: String },
    #[error("tarball contains package.json twice")]
    DuplicatePackageJson,
    #[error("package.json is larger than {limit} bytes")]
    PackageJsonTooLarge { limit: u64 },
    #[error("package.json is not valid JSON: {0}")]
    PackageJsonInvalid(String),
    #[error("package.json is not a JSON object")]
    PackageJsonNotObject,
}

/// What is wrong with an entry's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    #[error("is not valid UTF-8")]
    NotUtf8,
    #[error("contains a NUL byte")]
    Nul,
    /// node-tar on Windows reads a backslash as a separator.
    #[error("contains a backslash")]
    Backslash,
    #[error("is an absolute path")]
    Absolute,
    #[error("contains a \"..\" segment")]
    DotSegment,
    #[error("contains an empty path segment")]
    EmptySegment,
}

/// Entry types a package may not contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForbiddenKind {
    Symlink,
    HardLink,
    CharDevice,
    BlockDevice,
    Fifo,
}

impl fmt::Display for ForbiddenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Symlink => "symbolic link",
            Self::HardLink => "hard link",
            Self::CharDevice => "character device",
            Self::BlockDevice => "block device",
            Self::Fifo => "FIFO",
        })
    }
}

/// An extended header (GNU long name, PAX records) we refuse, mostly because node-tar and the
/// tar crate would apply it differently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtendedHeaderProblem {
    #[error("it is larger than {MAX_EXTENSION_BYTES} bytes")]
    TooLarge,
    #[error("malformed PAX record")]
    MalformedRecord,
    #[error("PAX key {0:?} appears twice")]
    DuplicateKey(String),
    #[error("PAX key {0:?} is not supported here")]
    UnsupportedKey(String),
    #[error("two extended headers of the same kind describe one entry")]
    Repeated,
    #[error("both a GNU long name and a PAX path name one entry")]
    ConflictingPaths,
    #[error("its size differs from the entry header's")]
    SizeMismatch,
    #[error("GNU long name contains a NUL byte")]
    NulInLongName,
}

impl From<ExtendedHeaderProblem> for TarballError {
    fn from(problem: ExtendedHeaderProblem) -> Self {
        Self::ExtendedHeader(problem)
    }
}

/// Inspects a gzip-compressed npm tarball. CPU-bound: run it on a blocking thread.
pub fn inspect(gz: &[u8], limits: &TarballLimits) -> Result<TarballInfo, TarballError> {
    if !gz.starts_with(&GZIP_MAGIC) {
        return Err(TarballError::NotGzip);
    }
    let budget = Rc::new(ReadBudget::new(BLOCK + PADDING_ALLOWANCE));
    // Node's zlib decodes every gzip member, so a second member must not hide entries from us.
    let reader = BudgetedReader {
        inner: MultiGzDecoder::new(gz),
        read: 0,
        budget: Rc::clone(&budget),
    };
    let mut archive = Archive::new(reader);
    // node-tar reads on after a lone zero block; stopping there could miss entries npm sees.
    archive.set_ignore_zeros(true);
    let mut scan = Scan::new(limits, budget);
    // Raw entries: we apply GNU long names and PAX records ourselves so that we can refuse
    // the ones node-tar would read differently.
    let entries = archive.entries().map_err(|e| scan.io_error(e))?.raw(true);
    for entry in entries {
        let mut entry = entry.map_err(|e| scan.io_error(e))?;
        scan.entry(&mut entry)?;
    }
    scan.finish()
}

/// How far into the decompressed stream the tar crate may read. It moves forward entry by entry
/// (to the end of the entry's data, plus one header and what is left of the padding allowance),
/// so bytes that no header accounts for can't turn into a gzip bomb.
struct ReadBudget {
    limit: Cell<u64>,
    exceeded: Cell<bool>,
}

impl ReadBudget {
    fn new(limit: u64) -> Self {
        Self {
            limit: Cell::new(limit),
            exceeded: Cell::new(false),
        }
    }
}

struct BudgetedReader<R> {
    inner: R,
    read: u64,
    budget: Rc<ReadBudget>,
}

impl<R: Read> Read for BudgetedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let remaining = self.budget.limit.get().saturating_sub(self.read);
        if remaining == 0 {
            // At the limit: fine if the stream ends here, not if anything follows.
            if self.inner.read(&mut [0])? == 0 {
                return Ok(0);
            }
            self.budget.exceeded.set(true);
            return Err(io::Error::other("read past the tarball's accounted size"));
        }
        let len = buf.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..len])?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Extended headers waiting for the entry they describe.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    pax: Option<LocalPax>,
}

/// The parts of a local PAX header that matter to us.
struct LocalPax {
    path: Option<Vec<u8>>,
    size: Option<u64>,
}

/// State carried from one tar entry to the next.
struct Scan<'a> {
    limits: &'a TarballLimits,
    budget: Rc<ReadBudget>,
    entries: u64,
    data_bytes: u64,
    data_end: u64,
    padding_left: u64,
    pending: Pending,
    root: Option<String>,
    manifest: Option<Map<String, Value>>,
    file_count: u64,
    unpacked_size: u64,
    has_shrinkwrap: bool,
    has_binding_gyp: bool,
    readme: Option<(u8, Readme)>,
}

impl<'a> Scan<'a> {
    fn new(limits: &'a TarballLimits, budget: Rc<ReadBudget>) -> Self {
        Self {
            limits,
            budget,
            entries: 0,
            data_bytes: 0,
            data_end: 0,
            padding_left: PADDING_ALLOWANCE,
            pending: Pending::default(),
            root: None,
            manifest: None,
            file_count: 0,
            unpacked_size: 0,
            has_shrinkwrap: false,
            has_binding_gyp: false,
            readme: None,
        }
    }

    /// A read failed: because it hit the budget, or because the gzip or tar data is broken.
    fn io_error(&self, error: io::Error) -> TarballError {
        if self.budget.exceeded.get() {
            TarballError::UnaccountedData
        } else {
            TarballError::Corrupt(error.to_string())
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut Entry<'_, R>) -> Result<(), TarballError> {
        self.account(entry)?;
        match entry.header().entry_type() {
            EntryType::GNULongName => {
                if self.pending.long_name.is_some() {
                    return Err(ExtendedHeaderProblem::Repeated.into());
                }
                let name = self.read_extension(entry)?;
                self.pending.long_name = Some(long_name(name)?);
            }
            EntryType::XHeader => {
                if self.pending.pax.is_some() {
                    return Err(ExtendedHeaderProblem::Repeated.into());
                }
                let records = self.read_extension(entry)?;
                self.pending.pax = Some(local_pax(&records)?);
            }
            EntryType::XGlobalHeader => check_global_pax(&self.read_extension(entry)?)?,
            // A link target, and links are refused anyway; the data is skipped.
            EntryType::GNULongLink => {}
            entry_type => self.member(entry, entry_type)?,
        }
        Ok(())
    }

    /// Counts the entry against the limits and lets the reader through to the end of its data.
    fn account<R: Read>(&mut self, entry: &Entry<'_, R>) -> Result<(), TarballError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(TarballError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        // Every entry's data counts, not only files': the tar crate reads through all of it.
        self.data_bytes = self.data_bytes.saturating_add(entry.size());
        if self.data_bytes > self.limits.max_unpacked_bytes {
            return Err(TarballError::TooLarge {
                limit: self.limits.max_unpacked_bytes,
            });
        }
        // Zero blocks skipped before this header come out of the padding allowance.
        let padding = entry.raw_header_position().saturating_sub(self.data_end);
        self.padding_left = self.padding_left.saturating_sub(padding);
        let data_blocks = entry.size().div_ceil(BLOCK).saturating_mul(BLOCK);
        self.data_end = entry.raw_file_position().saturating_add(data_blocks);
        let limit = self.data_end.saturating_add(BLOCK + self.padding_left);
        self.budget.limit.set(limit);
        Ok(())
    }

    fn read_extension<R: Read>(&self, entry: &mut Entry<'_, R>) -> Result<Vec<u8>, TarballError> {
        if entry.size() > MAX_EXTENSION_BYTES {
            return Err(ExtendedHeaderProblem::TooLarge.into());
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(|e| self.io_error(e))?;
        Ok(data)
    }

    /// A file system entry: only regular files and directories are allowed.
    fn member<R: Read>(&mut self, entry: &mut Entry<'_, R>, entry_type: EntryType) -> Result<(), TarballError> {
        let path = std::mem::take(&mut self.pending).path(entry)?;
        let shown_path = || shown(&path);
        let is_dir = match entry_type {
            EntryType::Regular => false,
            EntryType::Directory => true,
            other => {
                return Err(match forbidden_kind(other) {
                    Some(kind) => TarballError::ForbiddenEntry {
                        path: shown_path(),
                        kind,
                    },
                    None => TarballError::UnsupportedEntryType {
                        path: shown_path(),
                        type_flag: char::from(other.as_byte()),
                    },
                });
            }
        };
        // node-tar gives directories no data and reads the next header right after theirs.
        if is_dir && entry.size() > 0 {
            return Err(TarballError::DirectoryWithData {
                path: shown_path(),
                size: entry.size(),
            });
        }
        let unsafe_path = |problem| TarballError::UnsafePath {
            path: shown_path(),
            problem,
        };
        let text = std::str::from_utf8(&path).map_err(|_| unsafe_path(PathProblem::NotUtf8))?;
        let (root, inner) = split_path(text, is_dir).map_err(unsafe_path)?;
        let (root, inner) = (root.as_str(), inner.as_str());
        match &self.root {
            None => self.root = Some(root.to_owned()),
            Some(expected) if expected != root => {
                return Err(TarballError::OutsideRoot {
                    path: shown_path(),
                    root: expected.clone(),
                });
            }
            Some(_) => {}
        }
        if is_dir {
            return Ok(());
        }
        if inner.is_empty() {
            return Err(TarballError::NotInFolder { path: shown_path() });
        }
        self.file_count += 1;
        self.unpacked_size += entry.size();
        match inner {
            "package.json" => self.read_manifest(entry)?,
            "npm-shrinkwrap.json" => self.has_shrinkwrap = true,
            "binding.gyp" => self.has_binding_gyp = true,
            other => {
                if let Some(rank) = readme_rank(other)
                    && entry.size() <= MAX_README_BYTES
                    && self.readme.as_ref().is_none_or(|(best, _)| rank < *best)
                {
                    let mut bytes = Vec::new();
                    entry.read_to_end(&mut bytes).map_err(|e| self.io_error(e))?;
                    let readme = Readme {
                        file: other.to_owned(),
                        text: String::from_utf8_lossy(&bytes).into_owned(),
                    };
                    self.readme = Some((rank, readme));
                }
            }
        }
        Ok(())
    }

    fn read_manifest<R: Read>(&mut self, entry: &mut Entry<'_, R>) -> Result<(), TarballError> {
        // A tar may hold the same path twice; npm would unpack the last one.
        if self.manifest.is_some() {
            return Err(TarballError::DuplicatePackageJson);
        }
        if entry.size() > self.limits.max_package_json_bytes {
            return Err(TarballError::PackageJsonTooLarge {
                limit: self.limits.max_package_json_bytes,
            });
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| self.io_error(e))?;
        self.manifest = Some(parse_manifest(&bytes)?);
        Ok(())
    }

    fn finish(self) -> Result<TarballInfo, TarballError> {
        let Some(root) = self.root else {
            return Err(TarballError::Empty);
        };
        let Some(manifest) = self.manifest else {
            return Err(TarballError::MissingPackageJson { root });
        };
        Ok(TarballInfo {
            manifest,
            file_count: self.file_count,
            unpacked_size: self.unpacked_size,
            has_shrinkwrap: self.has_shrinkwrap,
            has_binding_gyp: self.has_binding_gyp,
            readme: self.readme.map(|(_, readme)| readme),
        })
    }
}

impl Pending {
    /// The entry's path after its extended headers, as both node-tar and the tar crate see it.
    fn path<R: Read>(self, entry: &Entry<'_, R>) -> Result<Vec<u8>, ExtendedHeaderProblem> {
        let (pax_path, pax_size) = self.pax.map_or((None, None), |pax| (pax.path, pax.size));
        // In raw mode the tar crate skips data by the header's size; node-tar would use PAX's.
        if pax_size.is_some_and(|size| size != entry.size()) {
            return Err(ExtendedHeaderProblem::SizeMismatch);
        }
        // The tar crate prefers the GNU name, node-tar whichever header came last.
        match (self.long_name, pax_path) {
            (Some(_), Some(_)) => Err(ExtendedHeaderProblem::ConflictingPaths),
            (Some(path), None) | (None, Some(path)) => Ok(path),
            (None, None) => Ok(entry.header().path_bytes().into_owned()),
        }
    }
}

/// node-tar cuts a GNU long name at its first NUL, the tar crate only drops a trailing one.
fn long_name(mut data: Vec<u8>) -> Result<Vec<u8>, ExtendedHeaderProblem> {
    while data.last() == Some(&0) {
        data.pop();
    }
    if data.contains(&0) {
        return Err(ExtendedHeaderProblem::NulInLongName);
    }
    Ok(data)
}

fn local_pax(data: &[u8]) -> Result<LocalPax, ExtendedHeaderProblem> {
    let mut pax = LocalPax { path: None, size: None };
    for (key, value) in pax_records(data)? {
        match key {
            "path" => pax.path = Some(value.to_vec()),
            "size" => pax.size = Some(pax_number(value)?),
            // node-tar lets PAX change the entry type; the tar crate ignores it.
            "type" => return Err(ExtendedHeaderProblem::UnsupportedKey(key.to_owned())),
            _ => {}
        }
    }
    Ok(pax)
}

/// node-tar applies a global header's `size` and `type` to every later entry; the tar crate
/// ignores global headers. Other keys (a git commit `comment`, times, owners) are harmless.
fn check_global_pax(data: &[u8]) -> Result<(), ExtendedHeaderProblem> {
    match pax_records(data)?
        .into_iter()
        .find(|(key, _)| matches!(*key, "size" | "type"))
    {
        Some((key, _)) => Err(ExtendedHeaderProblem::UnsupportedKey(key.to_owned())),
        None => Ok(()),
    }
}

/// Parses PAX records (`"<length> <key>=<value>\n"`) strictly. node-tar splits them on newlines
/// and skips lines it can't read, the tar crate stops at an empty line or a bad length, and
/// node-tar cuts values at a NUL: anything short of canonical records could be read two ways.
fn pax_records(data: &[u8]) -> Result<Vec<(&str, &[u8])>, ExtendedHeaderProblem> {
    let malformed = ExtendedHeaderProblem::MalformedRecord;
    let mut records: Vec<(&str, &[u8])> = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ').ok_or(malformed.clone())?;
        let digits = &rest[..space];
        if digits.is_empty() || digits[0] == b'0' || !digits.iter().all(u8::is_ascii_digit) {
            return Err(malformed);
        }
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|digits| digits.parse().ok())
            .filter(|&len| len > space + 1 && len <= rest.len())
            .ok_or(malformed.clone())?;
        let (record, tail) = rest.split_at(len);
        let body = record[space + 1..].strip_suffix(b"\n").ok_or(malformed.clone())?;
        if body.contains(&b'\n') || body.contains(&0) {
            return Err(malformed);
        }
        let equals = body.iter().position(|&b| b == b'=').ok_or(malformed.clone())?;
        let key = std::str::from_utf8(&body[..equals])
            .ok()
            .filter(|key| !key.is_empty())
            .ok_or(malformed.clone())?;
        if records.iter().any(|(seen, _)| *seen == key) {
            return Err(ExtendedHeaderProblem::DuplicateKey(shown(key.as_bytes())));
        }
        records.push((key, &body[equals + 1..]));
        rest = tail;
    }
    Ok(records)
}

/// A PAX number that node-tar's `+value` and the tar crate's `u64` parse read the same way.
fn pax_number(value: &[u8]) -> Result<u64, ExtendedHeaderProblem> {
    std::str::from_utf8(value)
        .ok()
        .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|text| text.parse().ok())
        .ok_or(ExtendedHeaderProblem::MalformedRecord)
}

fn forbidden_kind(entry_type: EntryType) -> Option<ForbiddenKind> {
    match entry_type {
        EntryType::Symlink => Some(ForbiddenKind::Symlink),
        EntryType::Link => Some(ForbiddenKind::HardLink),
        EntryType::Char => Some(ForbiddenKind::CharDevice),
        EntryType::Block => Some(ForbiddenKind::BlockDevice),
        EntryType::Fifo => Some(ForbiddenKind::Fifo),
        _ => None,
    }
}

/// Splits an entry path into its top-level folder and the path inside that folder (empty for
/// the folder itself).
/// Splits an entry path into its top-level folder and the rest, with `.` segments
/// dropped (npm itself packs `package/./lib/index.js` for some packages, and tar
/// writes `./package/…`; node-tar reads both as the plain path).
fn split_path(path: &str, is_dir: bool) -> Result<(String, String), PathProblem> {
    if path.contains('\0') {
        return Err(PathProblem::Nul);
    }
    if path.contains('\\') {
        return Err(PathProblem::Backslash);
    }
    let drive_prefix = matches!(path.as_bytes(), [letter, b':', ..] if letter.is_ascii_alphabetic());
    if path.starts_with('/') || drive_prefix {
        return Err(PathProblem::Absolute);
    }
    // Directory entries conventionally end with a slash.
    let path = if is_dir {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    };
    let mut segments = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" => return Err(PathProblem::EmptySegment),
            ".." => return Err(PathProblem::DotSegment),
            "." => {}
            _ => segments.push(segment),
        }
    }
    let Some((root, rest)) = segments.split_first() else {
        return Err(PathProblem::EmptySegment);
    };
    Ok(((*root).to_owned(), rest.join("/")))
}

fn parse_manifest(bytes: &[u8]) -> Result<Map<String, Value>, TarballError> {
    // npm's JSON parser skips a byte-order mark.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(manifest)) => Ok(manifest),
        Ok(_) => Err(TarballError::PackageJsonNotObject),
        Err(e) => Err(TarballError::PackageJsonInvalid(e.to_string())),
    }
}

/// Paths and keys come from the upload: keep the messages that quote them short.
fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::time::{Duration, Instant};

    use flate2::Compression;
    use flate2::write::GzEncoder;
    use serde_json::json;
    use tar::Header;

    use super::*;

    const MANIFEST: &[u8] = br#"{"name":"demo","version":"1.0.0"}"#;

    /// Builds tar archives entry by entry, writing header fields directly so that tests can
    /// craft what `tar::Builder` itself would refuse (`..`, absolute paths, odd types).
    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Self {
            Self(tar::Builder::new(Vec::new()))
        }

        /// A well-formed package: a folder, its package.json and one more file.
        fn package() -> Self {
            Self::new()
                .dir("package/")
                .file("package/package.json", MANIFEST)
                .file("package/index.js", b"module.exports = 1;\n")
        }

        fn file(self, path: &str, data: &[u8]) -> Self {
            self.entry(path.as_bytes(), EntryType::Regular, data)
        }

        fn dir(self, path: &str) -> Self {
            self.entry(path.as_bytes(), EntryType::Directory, b"")
        }

        fn entry(self, path: &[u8], entry_type: EntryType, data: &[u8]) -> Self {
            self.entry_with_size(path, entry_type, data.len() as u64, data)
        }

        /// `size` is what the header declares, whatever `data` holds.
        fn entry_with_size(mut self, path: &[u8], entry_type: EntryType, size: u64, data: &[u8]) -> Self {
            let mut header = Header::new_ustar();
            header.as_old_mut().name[..path.len()].copy_from_slice(path);
            header.set_entry_type(entry_type);
            header.set_size(size);
            header.set_mode(0o644);
            header.set_cksum();
            self.0.append(&header, data).unwrap();
            self
        }

        fn long_name(self, name: &str) -> Self {
            let mut data = name.as_bytes().to_vec();
            data.push(0);
            self.entry(b"././@LongLink", EntryType::GNULongName, &data)
        }

        fn pax(self, records: &[(&str, &str)]) -> Self {
            self.entry(b"PaxHeader", EntryType::XHeader, &pax_data(records))
        }

        fn global_pax(self, records: &[(&str, &str)]) -> Self {
            self.entry(b"pax_global_header", EntryType::XGlobalHeader, &pax_data(records))
        }

        /// Raw bytes, such as a lone zero block.
        fn raw(mut self, bytes: &[u8]) -> Self {
            self.0.get_mut().extend_from_slice(bytes);
            self
        }

        fn tar(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }

        fn tgz(self) -> Vec<u8> {
            gzip(&self.tar())
        }
    }

    fn pax_data(records: &[(&str, &str)]) -> Vec<u8> {
        let mut data = Vec::new();
        for (key, value) in records {
            let body = format!(" {key}={value}\n");
            // The length counts its own digits.
            let mut len = body.len() + 1;
            while len.to_string().len() + body.len() != len {
                len += 1;
            }
            data.extend_from_slice(format!("{len}{body}").as_bytes());
        }
        data
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn inspect_default(tgz: &[u8]) -> Result<TarballInfo, TarballError> {
        inspect(tgz, &TarballLimits::default())
    }

    fn unsafe_path(path: &str, problem: PathProblem) -> TarballError {
        TarballError::UnsafePath {
            path: path.into(),
            problem,
        }
    }

    #[test]
    fn reads_a_well_formed_package() {
        let info = inspect_default(&Tar::package().tgz()).unwrap();
        assert_eq!(
            Value::Object(info.manifest),
            json!({"name": "demo", "version": "1.0.0"})
        );
        assert_eq!(info.file_count, 2);
        assert_eq!(info.unpacked_size, (MANIFEST.len() + 20) as u64);
        assert!(!info.has_shrinkwrap);
        assert!(!info.has_binding_gyp);
    }

    #[test]
    fn keeps_manifest_key_order() {
        let manifest = br#"{"version":"1.0.0","name":"demo","a":1}"#;
        let info = inspect_default(&Tar::new().file("package/package.json", manifest).tgz()).unwrap();
        let keys: Vec<&str> = info.manifest.keys().map(String::as_str).collect();
        assert_eq!(keys, ["version", "name", "a"]);
    }

    #[test]
    fn notices_shrinkwrap_and_binding_gyp_at_the_root_only() {
        let nested = Tar::package()
            .file("package/lib/npm-shrinkwrap.json", b"{}")
            .file("package/lib/binding.gyp", b"{}")
            .tgz();
        let info = inspect_default(&nested).unwrap();
        assert!(!info.has_shrinkwrap);
        assert!(!info.has_binding_gyp);

        let root = Tar::package()
            .file("package/npm-shrinkwrap.json", b"{}")
            .file("package/binding.gyp", b"{}")
            .tgz();
        let info = inspect_default(&root).unwrap();
        assert!(info.has_shrinkwrap);
        assert!(info.has_binding_gyp);
        assert_eq!(info.file_count, 4);
    }

    #[test]
    fn reads_the_root_readme_preferring_markdown_and_skipping_huge_ones() {
        let info = inspect_default(
            &Tar::package()
                .file("package/docs/README.md", b"nested")
                .file("package/README.txt", b"text")
                .file("package/Readme.md", b"# Demo")
                .tgz(),
        )
        .unwrap();
        let readme = info.readme.unwrap();
        assert_eq!((readme.file.as_str(), readme.text.as_str()), ("Readme.md", "# Demo"));

        let huge = vec![b'x'; usize::try_from(MAX_README_BYTES).unwrap() + 1];
        let info = inspect_default(&Tar::package().file("package/README.md", &huge).tgz()).unwrap();
        assert_eq!(info.readme, None);
        assert_eq!(inspect_default(&Tar::package().tgz()).unwrap().readme, None);
    }

    #[test]
    fn accepts_any_single_root_folder() {
        let tgz = Tar::new()
            .file("node-demo/package.json", MANIFEST)
            .file("node-demo/lib/a.js", b"")
            .tgz();
        let info = inspect_default(&tgz).unwrap();
        assert_eq!(info.file_count, 2);
        assert_eq!(info.unpacked_size, MANIFEST.len() as u64);
    }

    #[test]
    fn accepts_long_names_written_by_the_tar_crate() {
        let long_path = format!("package/{}/index.js", "d".repeat(150));
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in [("package/package.json", MANIFEST), (&long_path, b"x")] {
            let mut header = Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, path, data).unwrap();
        }
        let info = inspect_default(&gzip(&builder.into_inner().unwrap())).unwrap();
        assert_eq!(info.file_count, 2);
    }

    #[test]
    fn applies_long_names_and_pax_paths() {
        let via_long_name = Tar::new()
            .long_name("package/package.json")
            .file("package/ignored.txt", MANIFEST)
            .tgz();
        assert!(inspect_default(&via_long_name).is_ok());

        let via_pax = Tar::new()
            .pax(&[("path", "package/package.json"), ("mtime", "1700000000")])
            .file("package/ignored.txt", MANIFEST)
            .tgz();
        assert!(inspect_default(&via_pax).is_ok());

        let global = Tar::new()
            .global_pax(&[("comment", "0123abcd")])
            .file("package/package.json", MANIFEST)
            .tgz();
        assert!(inspect_default(&global).is_ok());
    }

    #[test]
    fn accepts_a_byte_order_mark_in_package_json() {
        let tgz = Tar::new()
            .file("package/package.json", b"\xEF\xBB\xBF{\"name\":\"demo\"}")
            .tgz();
        assert_eq!(inspect_default(&tgz).unwrap().manifest["name"], "demo");
    }

    #[test]
    fn refuses_input_that_is_not_gzip() {
        assert_eq!(inspect_default(&Tar::package().tar()), Err(TarballError::NotGzip));
        assert_eq!(inspect_default(b""), Err(TarballError::NotGzip));
        assert_eq!(inspect_default(b"\x1f"), Err(TarballError::NotGzip));
    }

    #[test]
    fn refuses_corrupt_data() {
        let mut truncated = Tar::package().tgz();
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(inspect_default(&truncated), Err(TarballError::Corrupt(_))));

        let garbage = b"\x1f\x8b\x08\x00garbage garbage garbage";
        assert!(matches!(inspect_default(garbage), Err(TarballError::Corrupt(_))));

        let not_tar = gzip(&[b'x'; 2048]);
        assert!(matches!(inspect_default(&not_tar), Err(TarballError::Corrupt(_))));
    }

    #[test]
    fn refuses_archives_without_a_manifest() {
        assert_eq!(inspect_default(&Tar::new().tgz()), Err(TarballError::Empty));
        assert_eq!(inspect_default(&gzip(b"")), Err(TarballError::Empty));
        assert_eq!(
            inspect_default(&Tar::new().file("package/index.js", b"").tgz()),
            Err(TarballError::MissingPackageJson { root: "package".into() })
        );
        // Only the root's package.json is the manifest.
        assert_eq!(
            inspect_default(&Tar::new().file("package/lib/package.json", MANIFEST).tgz()),
            Err(TarballError::MissingPackageJson { root: "package".into() })
        );
        // A directory of that name is not a manifest either.
        assert_eq!(
            inspect_default(&Tar::new().dir("package/package.json/").tgz()),
            Err(TarballError::MissingPackageJson { root: "package".into() })
        );
    }

    #[test]
    fn refuses_a_second_package_json() {
        let tgz = Tar::package().file("package/package.json", br#"{"name":"evil"}"#).tgz();
        assert_eq!(inspect_default(&tgz), Err(TarballError::DuplicatePackageJson));
    }

    #[test]
    fn reads_past_a_lone_zero_block_like_node_tar() {
        let tgz = Tar::package()
            .raw(&[0; 512])
            .file("package/package.json", br#"{"name":"evil"}"#)
            .tgz();
        assert_eq!(inspect_default(&tgz), Err(TarballError::DuplicatePackageJson));
    }

    #[test]
    fn reads_every_gzip_member_like_node() {
        let mut first = Tar::package().tar();
        // Drop the end-of-archive blocks so the second member continues the archive.
        first.truncate(first.len() - 1024);
        let second = Tar::new().file("package/package.json", br#"{"name":"evil"}"#).tar();
        let mut tgz = gzip(&first);
        tgz.extend(gzip(&second));
        assert_eq!(inspect_default(&tgz), Err(TarballError::DuplicatePackageJson));
    }

    #[test]
    fn refuses_bad_package_json() {
        let limits = TarballLimits {
            max_package_json_bytes: 10,
            ..TarballLimits::default()
        };
        let big = Tar::new().file("package/package.json", br#"{"name":"too-long"}"#).tgz();
        assert_eq!(
            inspect(&big, &limits),
            Err(TarballError::PackageJsonTooLarge { limit: 10 })
        );

        let invalid = Tar::new().file("package/package.json", b"{name: 1}").tgz();
        let error = inspect_default(&invalid).unwrap_err();
        assert!(
            matches!(&error, TarballError::PackageJsonInvalid(detail) if detail.contains("line 1")),
            "{error:?}"
        );

        for json in [&b"[]"[..], b"\"text\"", b"null"] {
            let tgz = Tar::new().file("package/package.json", json).tgz();
            assert_eq!(inspect_default(&tgz), Err(TarballError::PackageJsonNotObject));
        }
    }

    #[test]
    fn refuses_unsafe_paths() {
        let cases = [
            ("../package.json", PathProblem::DotSegment),
            ("package/../../etc/passwd", PathProblem::DotSegment),
            ("package/..", PathProblem::DotSegment),
            ("/etc/passwd", PathProblem::Absolute),
            ("C:/Windows/evil.dll", PathProblem::Absolute),
            ("c:evil", PathProblem::Absolute),
            ("package\\..\\..\\evil", PathProblem::Backslash),
            ("package/a\\b", PathProblem::Backslash),
            ("package//index.js", PathProblem::EmptySegment),
            ("package/index.js/", PathProblem::EmptySegment),
        ];
        for (path, problem) in cases {
            let tgz = Tar::package().file(path, b"").tgz();
            assert_eq!(inspect_default(&tgz), Err(unsafe_path(path, problem)), "{path}");
        }
        let not_utf8 = Tar::package().entry(b"package/\xff.js", EntryType::Regular, b"").tgz();
        assert_eq!(
            inspect_default(&not_utf8),
            Err(unsafe_path("package/\u{fffd}.js", PathProblem::NotUtf8))
        );
    }

    #[test]
    fn dot_segments_are_the_plain_path() {
        // webpack-cli 5.1.4 on the public registry packs `package/./lib/index.js`.
        let tgz = Tar::new()
            .file("./package/package.json", br#"{"name":"x","version":"1.0.0"}"#)
            .file("package/./lib/index.js", b"x")
            .tgz();
        let info = inspect_default(&tgz).expect("accepted");
        assert_eq!(info.file_count, 2);
        assert_eq!(info.manifest["name"], "x");
        // …so a second package.json spelled differently is still a duplicate.
        let aliased = Tar::package().file("package/./package.json", b"{}").tgz();
        assert_eq!(inspect_default(&aliased), Err(TarballError::DuplicatePackageJson));
    }

    #[test]
    fn refuses_unsafe_paths_hidden_in_extended_headers() {
        let long_name = Tar::package()
            .long_name("package/../../.bashrc")
            .file("package/harmless.js", b"")
            .tgz();
        assert_eq!(
            inspect_default(&long_name),
            Err(unsafe_path("package/../../.bashrc", PathProblem::DotSegment))
        );

        let pax = Tar::package()
            .pax(&[("path", "/etc/cron.d/evil")])
            .file("package/harmless.js", b"")
            .tgz();
        assert_eq!(
            inspect_default(&pax),
            Err(unsafe_path("/etc/cron.d/evil", PathProblem::Absolute))
        );

        let nul = Tar::package()
            .long_name("package/a\0/../../evil")
            .file("package/harmless.js", b"")
            .tgz();
        assert_eq!(inspect_default(&nul), Err(ExtendedHeaderProblem::NulInLongName.into()));
    }

    #[test]
    fn refuses_links_devices_and_fifos() {
        let cases = [
            (EntryType::Symlink, ForbiddenKind::Symlink),
            (EntryType::Link, ForbiddenKind::HardLink),
            (EntryType::Char, ForbiddenKind::CharDevice),
            (EntryType::Block, ForbiddenKind::BlockDevice),
            (EntryType::Fifo, ForbiddenKind::Fifo),
        ];
        for (entry_type, kind) in cases {
            let tgz = Tar::package().entry(b"package/link", entry_type, b"").tgz();
            assert_eq!(
                inspect_default(&tgz),
                Err(TarballError::ForbiddenEntry {
                    path: "package/link".into(),
                    kind
                }),
                "{entry_type:?}"
            );
        }
    }

    #[test]
    fn refuses_other_entry_types() {
        for flag in [b'7', b'S', b'V', b'D', b'N'] {
            let tgz = Tar::package().entry(b"package/odd", EntryType::new(flag), b"").tgz();
            assert_eq!(
                inspect_default(&tgz),
                Err(TarballError::UnsupportedEntryType {
                    path: "package/odd".into(),
                    type_flag: char::from(flag)
                }),
                "{}",
                char::from(flag)
            );
        }
    }

    #[test]
    fn refuses_directories_with_data() {
        let tgz = Tar::package()
            .entry(b"package/lib/", EntryType::Directory, &[b'x'; 600])
            .tgz();
        assert_eq!(
            inspect_default(&tgz),
            Err(TarballError::DirectoryWithData {
                path: "package/lib/".into(),
                size: 600
            })
        );
    }

    #[test]
    fn requires_one_package_folder() {
        let two_roots = Tar::package().file("other/index.js", b"").tgz();
        assert_eq!(
            inspect_default(&two_roots),
            Err(TarballError::OutsideRoot {
                path: "other/index.js".into(),
                root: "package".into()
            })
        );
        let top_level_file = Tar::new().file("index.js", b"").tgz();
        assert_eq!(
            inspect_default(&top_level_file),
            Err(TarballError::NotInFolder {
                path: "index.js".into()
            })
        );
    }

    #[test]
    fn refuses_too_many_entries() {
        let limits = TarballLimits {
            max_entries: 3,
            ..TarballLimits::default()
        };
        assert!(inspect(&Tar::package().tgz(), &limits).is_ok());
        let tgz = Tar::package().file("package/more.js", b"").tgz();
        assert_eq!(inspect(&tgz, &limits), Err(TarballError::TooManyEntries { limit: 3 }));
    }

    #[test]
    fn refuses_oversized_contents_from_the_headers() {
        let limits = TarballLimits {
            max_unpacked_bytes: 1000,
            ..TarballLimits::default()
        };
        let fits = Tar::package().file("package/a.bin", &[1; 900]).tgz();
        assert!(inspect(&fits, &limits).is_ok());
        let too_big = Tar::package().file("package/a.bin", &[1; 1000]).tgz();
        assert_eq!(inspect(&too_big, &limits), Err(TarballError::TooLarge { limit: 1000 }));
        // The declared size is enough: the data is never read.
        let declared = Tar::package()
            .entry_with_size(b"package/a.bin", EntryType::Regular, u64::MAX / 2, b"")
            .tgz();
        assert_eq!(inspect(&declared, &limits), Err(TarballError::TooLarge { limit: 1000 }));
    }

    /// A gzip stream whose first part is `prefix` and which then inflates to 1 GiB of zeros.
    fn gzip_bomb(prefix: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(prefix).unwrap();
        let zeros = vec![0; 1 << 20];
        for _ in 0..1024 {
            encoder.write_all(&zeros).unwrap();
        }
        encoder.finish().unwrap()
    }

    #[test]
    fn stops_a_gzip_bomb_in_a_file() {
        let limits = TarballLimits {
            max_unpacked_bytes: 4 << 20,
            ..TarballLimits::default()
        };
        let header = Tar::package()
            .entry_with_size(b"package/bomb.bin", EntryType::Regular, 1 << 30, b"")
            .0
            .into_inner()
            .unwrap();
        // `into_inner` appended the end-of-archive blocks; they stand for the file's first bytes.
        let bomb = gzip_bomb(&header);
        let started = Instant::now();
        assert_eq!(inspect(&bomb, &limits), Err(TarballError::TooLarge { limit: 4 << 20 }));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn stops_a_gzip_bomb_after_the_last_entry() {
        let bomb = gzip_bomb(&Tar::package().tar());
        let started = Instant::now();
        assert_eq!(inspect_default(&bomb), Err(TarballError::UnaccountedData));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn allows_ordinary_end_padding() {
        // GNU tar pads archives to 10 KiB records.
        let tgz = gzip(&[Tar::package().tar(), vec![0; 10 * 1024]].concat());
        assert!(inspect_default(&tgz).is_ok());
        let tgz = gzip(&[Tar::package().tar(), vec![0; 128 * 1024]].concat());
        assert_eq!(inspect_default(&tgz), Err(TarballError::UnaccountedData));
    }

    #[test]
    fn refuses_ambiguous_extended_headers() {
        let cases = [
            (
                Tar::new()
                    .long_name("package/package.json")
                    .pax(&[("path", "package/other.json")]),
                ExtendedHeaderProblem::ConflictingPaths,
            ),
            (
                Tar::new().long_name("package/a").long_name("package/b"),
                ExtendedHeaderProblem::Repeated,
            ),
            (
                Tar::new().pax(&[("path", "package/a")]).pax(&[("path", "package/b")]),
                ExtendedHeaderProblem::Repeated,
            ),
            (
                Tar::new().pax(&[("path", "package/a"), ("path", "package/b")]),
                ExtendedHeaderProblem::DuplicateKey("path".into()),
            ),
            (
                Tar::new().pax(&[("type", "2")]),
                ExtendedHeaderProblem::UnsupportedKey("type".into()),
            ),
            (Tar::new().pax(&[("size", "12")]), ExtendedHeaderProblem::SizeMismatch),
            (Tar::new().pax(&[("size", "")]), ExtendedHeaderProblem::MalformedRecord),
            (
                Tar::new().pax(&[("size", "0x10")]),
                ExtendedHeaderProblem::MalformedRecord,
            ),
            (
                Tar::new().global_pax(&[("size", "0")]),
                ExtendedHeaderProblem::UnsupportedKey("size".into()),
            ),
            (
                Tar::new().global_pax(&[("type", "2")]),
                ExtendedHeaderProblem::UnsupportedKey("type".into()),
            ),
            (
                Tar::new().entry(b"PaxHeader", EntryType::XHeader, &[0; MAX_EXTENSION_BYTES as usize + 1]),
                ExtendedHeaderProblem::TooLarge,
            ),
        ];
        for (tar, problem) in cases {
            let tgz = tar.file("package/package.json", MANIFEST).tgz();
            assert_eq!(inspect_default(&tgz), Err(problem.clone().into()), "{problem:?}");
        }
        // A PAX size that agrees with the header is fine.
        let tgz = Tar::new()
            .pax(&[("size", &MANIFEST.len().to_string())])
            .file("package/package.json", MANIFEST)
            .tgz();
        assert!(inspect_default(&tgz).is_ok());
    }

    #[test]
    fn parses_pax_records_strictly() {
        let good = pax_data(&[("path", "a=b"), ("mtime", "1.5")]);
        assert_eq!(
            pax_records(&good),
            Ok(vec![("path", &b"a=b"[..]), ("mtime", &b"1.5"[..])])
        );
        for bad in [
            &b"12 path=abc\n\n12 size=123\n"[..], // the tar crate stops at an empty line
            b"11 path=abc\n",                     // wrong length
            b"013 path=abc\n",                    // leading zero
            b"+13 path=abc\n",
            b"11 path=abc",
            b"11 pathabc\n",
            b"9 =value\n",
            b"13 path=a\0bc\n",
            b"13 path=a\nbc\n",
            b"path=abc\n",
            b"99999999999999999999999 path=abc\n",
        ] {
            assert_eq!(
                pax_records(bad),
                Err(ExtendedHeaderProblem::MalformedRecord),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn quotes_long_paths_briefly() {
        let path = format!("package/{}", "a".repeat(300));
        let tgz = Tar::package()
            .long_name(&path)
            .entry(b"x", EntryType::Symlink, b"")
            .tgz();
        let message = inspect_default(&tgz).unwrap_err().to_string();
        assert!(message.contains(&format!("{}…", &path[..MAX_SHOWN_CHARS])), "{message}");
        assert!(message.len() < 300, "{message}");
    }

    #[test]
    fn error_messages_read_well() {
        let symlink = Tar::package().entry(b"package/evil", EntryType::Symlink, b"").tgz();
        assert_eq!(
            inspect_default(&symlink).unwrap_err().to_string(),
            r#"tarball entry "package/evil" is a symbolic link, which npm packages may not contain"#
        );
        let traversal = Tar::package().file("package/../evil", b"").tgz();
        assert_eq!(
            inspect_default(&traversal).unwrap_err().to_string(),
            r#"tarball entry "package/../evil" contains a ".." segment"#
        );
        assert_eq!(
            TarballError::TooLarge { limit: 1024 }.to_string(),
            "tarball unpacks to more than 1024 bytes"
        );
        assert_eq!(
            TarballError::MissingPackageJson { root: "package".into() }.to_string(),
            "tarball has no package/package.json"
        );
    }
}
