//! OSV records (the format of the GitHub Advisory Database, the OpenSSF malicious-packages
//! data and osv.dev's exports) turned into `Advisory`: what the firewall and `npm audit`
//! need, npm entries only, versions checked once here so every later comparison is sound.

pub mod import;

use std::collections::HashMap;

use nodejs_semver::Version;
use serde::{Deserialize, Serialize};

use crate::range::parse_version;
use crate::severity::Severity;

pub use gatehouse_npm::packument::Millis;

/// `details` beyond this is cut: reports show an overview, the URL has the rest.
const MAX_DETAILS: usize = 2048;
/// A summary is a title; a source that puts a whole text there is cut like `details`.
const MAX_SUMMARY: usize = 512;
/// OSV ids are short ASCII (`GHSA-35jh-r3h4-6jhm`, `MAL-2025-15640`, `PYSEC-2021-1`).
const MAX_ID: usize = 128;

/// The range text of "no version at all": nothing sorts below `0.0.0-0`, prereleases included.
const NO_VERSION: &str = "<0.0.0-0";
/// `patched_versions` when nothing is fixed: npm's quick audit writes it so, and npm 6
/// compares with this exact text to print "No patch available" (it is not a strictly empty
/// range once prereleases count: `0.0.0-0` is below it).
pub const NOTHING_PATCHED: &str = "<0.0.0";

/// One advisory, normalized: what it says about npm packages and how bad it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// `GHSA-35jh-r3h4-6jhm`, `MAL-2025-15640`.
    pub id: String,
    /// Other names of the same advisory (`CVE-2021-23337`, …), without `id`.
    pub aliases: Vec<String>,
    /// `summary`, else the first line of `details`, else the id.
    pub summary: String,
    /// `details`, cut to at most 2 KiB.
    pub details: String,
    pub severity: Severity,
    /// The CVSS vector the severity came from (the highest-scoring one), if any.
    pub cvss: Option<Cvss>,
    /// `database_specific.cwe_ids` (`CWE-77`, …).
    pub cwe: Vec<String>,
    /// Where a person reads more: GitHub for a GHSA (as id or alias), else osv.dev.
    pub url: String,
    pub published: Option<Millis>,
    pub modified: Millis,
    /// An OpenSSF malicious-packages record (`MAL-…`): the versions contain malware.
    pub malware: bool,
    /// One entry per npm package, in the order the record names them.
    pub affected: Vec<Affected>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cvss {
    pub score: f64,
    pub vector: String,
}

/// The versions of one package an advisory affects: every span, plus the exact versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Affected {
    pub package: String,
    pub spans: Vec<Span>,
    /// Exact versions (OSV `versions[]`), in npm order.
    pub versions: Vec<String>,
}

/// Affected from `introduced` (inclusive) to `end`. Versions are valid npm versions,
/// written canonically (no build metadata), checked when the record was parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// `None`: from the start (OSV `introduced: "0"`).
    pub introduced: Option<String>,
    /// `None`: every later version too.
    pub end: Option<End>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// The first version that is not affected.
    Fixed(String),
    /// The last version that is affected.
    LastAffected(String),
}

/// What one OSV record comes to.
// Short-lived (one per record, matched at once): not worth a box per advisory.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Advisory(Advisory),
    Ignored(Ignored),
}

/// Sound records that say nothing for an npm registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// `withdrawn` is set: the advisory was retracted.
    Withdrawn,
    /// No `affected` entry has the ecosystem `npm`.
    NotNpm,
}

#[derive(Debug, thiserror::Error)]
pub enum OsvError {
    /// Not an OSV record at all: a source with one of these is not trusted as a whole.
    #[error("not an OSV record: {0}")]
    Malformed(String),
    /// An OSV record this server cannot use (it is skipped, the rest imported).
    #[error("advisory {id} cannot be used: {why}")]
    Unusable { id: String, why: String },
}

/// Reads one OSV record.
pub fn parse_osv(json: &[u8]) -> Result<Parsed, OsvError> {
    let raw: RawRecord = serde_json::from_slice(json).map_err(|e| OsvError::Malformed(e.to_string()))?;
    normalize(raw)
}

// The parts of the OSV schema we read (https://ossf.github.io/osv-schema/); serde ignores
// the rest. Typed fields refuse wrong types (Malformed); `database_specific` is free-form
// by the schema, so its members are read leniently.

#[derive(Deserialize)]
struct RawRecord {
    id: String,
    modified: String,
    published: Option<String>,
    withdrawn: Option<String>,
    aliases: Option<Vec<String>>,
    summary: Option<String>,
    details: Option<String>,
    severity: Option<Vec<RawSeverity>>,
    affected: Option<Vec<RawAffected>>,
    database_specific: Option<RawDatabaseSpecific>,
}

#[derive(Deserialize)]
struct RawSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct RawAffected {
    package: Option<RawPackage>,
    ranges: Option<Vec<RawRange>>,
    versions: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawPackage {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(rename = "type")]
    kind: String,
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
struct RawEvent {
    introduced: Option<String>,
    fixed: Option<String>,
    last_affected: Option<String>,
    limit: Option<String>,
}

#[derive(Deserialize)]
struct RawDatabaseSpecific {
    severity: Option<serde_json::Value>,
    cwe_ids: Option<serde_json::Value>,
}

fn normalize(raw: RawRecord) -> Result<Parsed, OsvError> {
    let RawRecord {
        id,
        modified,
        published,
        withdrawn,
        aliases,
        summary,
        details,
        severity,
        affected,
        database_specific,
    } = raw;
    check_id(&id)?;
    let modified = millis(&modified)
        .ok_or_else(|| OsvError::Malformed(format!("{id}: modified {modified:?} is not an RFC 3339 time")))?;
    if withdrawn.is_some() {
        return Ok(Parsed::Ignored(Ignored::Withdrawn));
    }
    let npm: Vec<RawAffected> = affected
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.package.as_ref().is_some_and(|p| p.ecosystem == "npm"))
        .collect();
    if npm.is_empty() {
        return Ok(Parsed::Ignored(Ignored::NotNpm));
    }
    let unusable = |why: String| OsvError::Unusable { id: id.clone(), why };
    let affected = npm_packages(npm).map_err(unusable)?;
    let malware = id.starts_with("MAL-");
    let (database_severity, cwe) = match &database_specific {
        Some(d) => (
            d.severity.as_ref().and_then(|s| s.as_str()?.parse::<Severity>().ok()),
            strings(d.cwe_ids.as_ref()),
        ),
        None => (None, Vec::new()),
    };
    let (severity, cvss) =
        rate(&id, severity.as_deref().unwrap_or_default(), database_severity, malware).map_err(unusable)?;

    let mut names: Vec<String> = Vec::new();
    for alias in aliases.unwrap_or_default() {
        // Aliases land in URLs too; one that is no identifier names nothing we can use.
        if is_osv_id(&alias) && alias != id && !names.contains(&alias) {
            names.push(alias);
        }
    }
    let details = details.unwrap_or_default();
    let summary = summary
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .or_else(|| details.lines().map(str::trim).find(|l| !l.is_empty()))
        .map_or_else(|| id.clone(), |s| cut(s, MAX_SUMMARY).to_owned());
    let url = match std::iter::once(&id).chain(&names).find(|n| n.starts_with("GHSA-")) {
        Some(ghsa) => format!("https://github.com/advisories/{ghsa}"),
        None => format!("https://osv.dev/vulnerability/{id}"),
    };
    Ok(Parsed::Advisory(Advisory {
        aliases: names,
        summary,
        details: cut(&details, MAX_DETAILS).to_owned(),
        severity,
        cvss,
        cwe,
        url,
        published: published.as_deref().and_then(millis),
        modified,
        malware,
        affected,
        id,
    }))
}

/// The id lands in URLs and messages: keep it to what OSV ids are made of.
fn check_id(id: &str) -> Result<(), OsvError> {
    if is_osv_id(id) {
        Ok(())
    } else {
        Err(OsvError::Malformed(format!(
            "id {:?} is not an OSV identifier (letters, digits, - _ . :)",
            cut(id, MAX_ID)
        )))
    }
}

fn is_osv_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn millis(text: &str) -> Option<Millis> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The strings of a free-form JSON array (anything else: none).
fn strings(value: Option<&serde_json::Value>) -> Vec<String> {
    value
        .and_then(serde_json::Value::as_array)
        .map(|items| items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// At most `max` bytes of `text`, cut on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// How bad: the highest CVSS v3/v4 score, else GitHub's rating, else a default.
fn rate(
    id: &str,
    vectors: &[RawSeverity],
    database_severity: Option<Severity>,
    malware: bool,
) -> Result<(Severity, Option<Cvss>), String> {
    let mut best: Option<Cvss> = None;
    let mut unreadable: Option<String> = None;
    for entry in vectors.iter().filter(|s| s.kind == "CVSS_V3" || s.kind == "CVSS_V4") {
        match entry.score.parse::<cvss::Cvss>() {
            Ok(vector) => {
                let score = vector.score();
                if best.as_ref().is_none_or(|b| score > b.score) {
                    best = Some(Cvss {
                        score,
                        vector: entry.score.clone(),
                    });
                }
            }
            Err(e) => unreadable = Some(format!("CVSS vector {:?} does not parse: {e}", entry.score)),
        }
    }
    let severity = if malware {
        // Installing malware is the worst outcome whatever a score says.
        Severity::Critical
    } else if let Some(c) = &best {
        Severity::from_score(c.score)
    } else if let Some(s) = database_severity {
        if let Some(why) = &unreadable {
            tracing::warn!(advisory = id, "{why}; using the database's own rating, {s}");
        }
        s
    } else if let Some(why) = unreadable {
        // The record claims a severity we cannot read: guessing could understate it.
        return Err(why);
    } else {
        // An advisory without any rating still names affected versions: count it, at the
        // level npm's own data gives most advisories, rather than drop it or call it critical.
        Severity::Moderate
    };
    Ok((severity, best))
}

/// The npm entries, one `Affected` per package (GHSA often has one entry per branch).
fn npm_packages(entries: Vec<RawAffected>) -> Result<Vec<Affected>, String> {
    let mut out: Vec<Affected> = Vec::new();
    let mut exact: Vec<Vec<(Version, String)>> = Vec::new();
    for entry in entries {
        let Some(package) = entry.package else { continue };
        let mut spans = Vec::new();
        for range in entry.ranges.unwrap_or_default() {
            match range.kind.as_str() {
                "SEMVER" | "ECOSYSTEM" => {
                    spans.extend(spans_of(range.events).map_err(|why| format!("package {}: {why}", package.name))?)
                }
                // Commit ranges say nothing an npm version can be compared with.
                "GIT" => {}
                other => {
                    return Err(format!(
                        "package {}: range type {other:?} is not SEMVER, ECOSYSTEM or GIT",
                        package.name
                    ));
                }
            }
        }
        let mut versions = Vec::new();
        for text in entry.versions.unwrap_or_default() {
            let version = canonical(&text)
                .ok_or_else(|| format!("package {}: {text:?} in versions[] is not an npm version", package.name))?;
            versions.push(version);
        }
        match out.iter().position(|a| a.package == package.name) {
            Some(i) => {
                out[i].spans.extend(spans);
                exact[i].extend(versions);
            }
            None => {
                out.push(Affected {
                    package: package.name,
                    spans,
                    versions: Vec::new(),
                });
                exact.push(versions);
            }
        }
    }
    for (affected, mut versions) in out.iter_mut().zip(exact) {
        versions.sort_by(|a, b| a.0.cmp(&b.0));
        versions.dedup_by(|a, b| a.0 == b.0);
        affected.versions = versions.into_iter().map(|(_, text)| text).collect();
    }
    Ok(out)
}

enum Event {
    Introduced,
    Fixed,
    LastAffected,
}

/// OSV's evaluation: events in version order; `introduced` opens a span unless one is open,
/// `fixed`/`last_affected` close the open one; an open span at the end runs to the last version.
fn spans_of(events: Vec<RawEvent>) -> Result<Vec<Span>, String> {
    let mut points: Vec<(Option<Version>, Event, Option<String>)> = Vec::new();
    for event in events {
        let (kind, text) = match (event.introduced, event.fixed, event.last_affected, event.limit) {
            (Some(v), None, None, None) => (Event::Introduced, v),
            (None, Some(v), None, None) => (Event::Fixed, v),
            (None, None, Some(v), None) => (Event::LastAffected, v),
            // `limit` bounds GIT ranges; in version order it changes nothing.
            (None, None, None, Some(_)) => continue,
            _ => return Err("a range event must have exactly one of introduced, fixed, last_affected, limit".into()),
        };
        if matches!(kind, Event::Introduced) && text == "0" {
            points.push((None, kind, None));
            continue;
        }
        let (version, text) = canonical(&text).ok_or_else(|| format!("range event {text:?} is not an npm version"))?;
        points.push((Some(version), kind, Some(text)));
    }
    // Stable: events at one version keep the record's order. `None` ("0") sorts first.
    points.sort_by(|a, b| a.0.cmp(&b.0));

    let mut spans = Vec::new();
    let mut open: Option<Option<String>> = None;
    for (_, kind, text) in points {
        match kind {
            Event::Introduced => {
                if open.is_none() {
                    open = Some(text);
                }
            }
            Event::Fixed | Event::LastAffected => {
                if let (Some(introduced), Some(text)) = (open.take(), text) {
                    let end = match kind {
                        Event::Fixed => End::Fixed(text),
                        _ => End::LastAffected(text),
                    };
                    spans.push(Span {
                        introduced,
                        end: Some(end),
                    });
                }
            }
        }
    }
    if let Some(introduced) = open {
        spans.push(Span { introduced, end: None });
    }
    Ok(spans)
}

/// A version as npm reads it, and its canonical text (build metadata dropped: npm ignores
/// it when comparing, and it has no place in the range texts written from these).
fn canonical(text: &str) -> Option<(Version, String)> {
    let version = parse_version(text.trim())?;
    let mut shown = version.to_string();
    if let Some(plus) = shown.find('+') {
        shown.truncate(plus);
    }
    Some((version, shown))
}

impl Advisory {
    /// The npm packages the advisory names.
    pub fn packages(&self) -> impl Iterator<Item = &str> {
        self.affected.iter().map(|a| a.package.as_str())
    }

    /// Whether `version` of `package` is affected, in npm order with prereleases
    /// (`1.2.3-beta` is below `1.2.3`). A version npm cannot parse is not affected.
    pub fn affects(&self, package: &str, version: &str) -> bool {
        let Some(version) = parse_version(version) else {
            return false;
        };
        self.affected
            .iter()
            .filter(|a| a.package == package)
            .any(|a| a.contains(&version))
    }

    /// The affected versions of `package` as an npm range (`<4.17.21`, `>=3.7.0 <4.17.19`,
    /// `>=1.0.0 <=1.2.0 || 2.0.0`, `*`), equivalent to `affects`.
    pub fn vulnerable_versions(&self, package: &str) -> String {
        let stretches = self.stretches(package);
        if stretches.is_empty() {
            return NO_VERSION.to_owned();
        }
        stretches.iter().map(Stretch::range).collect::<Vec<_>>().join(" || ")
    }

    /// The versions of `package` at or after a fix that are not affected, as an npm range
    /// (`>=4.17.21`; `>=1.5.0 <2.0.0 || >=2.3.0` for fixes on two branches). Versions before
    /// the first affected one are not "patched", and `<0.0.0` (as npm shows it) when nothing
    /// is fixed: a `last_affected` end or an exact version list names no fix.
    pub fn patched_versions(&self, package: &str) -> String {
        let stretches = self.stretches(package);
        let mut parts = Vec::new();
        let mut fixed = false;
        for (i, stretch) in stretches.iter().enumerate() {
            let from = match &stretch.hi {
                Hi::Open => break,
                Hi::Before(v) => {
                    fixed = true;
                    format!(">={v}")
                }
                Hi::Through(v) if fixed => format!(">{v}"),
                Hi::Through(_) => continue,
            };
            match stretches.get(i + 1).map(|next| &next.lo) {
                Some(Some(next)) => parts.push(format!("{from} <{next}")),
                // Only the first stretch starts at the start; a later one always has a `lo`.
                Some(None) => {}
                None => parts.push(from),
            }
        }
        if parts.is_empty() {
            return NOTHING_PATCHED.to_owned();
        }
        parts.join(" || ")
    }

    /// The affected versions of `package` as disjoint stretches in npm order.
    fn stretches(&self, package: &str) -> Vec<Stretch> {
        let mut all: Vec<Stretch> = Vec::new();
        for affected in self.affected.iter().filter(|a| a.package == package) {
            all.extend(affected.spans.iter().filter_map(Stretch::of_span));
            all.extend(affected.versions.iter().filter_map(|v| {
                let v = parse_version(v)?;
                Some(Stretch {
                    lo: Some(v.clone()),
                    hi: Hi::Through(v),
                })
            }));
        }
        all.retain(|s| !s.is_empty());
        all.sort_by(|a, b| a.lo.cmp(&b.lo));
        let mut merged: Vec<Stretch> = Vec::new();
        for next in all {
            if let Some(last) = merged.last_mut()
                && last.reaches(&next.lo)
            {
                last.hi = Hi::max(std::mem::replace(&mut last.hi, Hi::Open), next.hi);
                continue;
            }
            merged.push(next);
        }
        merged
    }
}

impl Affected {
    fn contains(&self, version: &Version) -> bool {
        self.versions
            .iter()
            .any(|v| parse_version(v).is_some_and(|v| v == *version))
            || self.spans.iter().any(|s| s.contains(version))
    }
}

impl Span {
    /// A bound that does not parse (never from `parse_osv`) matches nothing, as in `stretches`.
    fn contains(&self, version: &Version) -> bool {
        let after = match &self.introduced {
            None => true,
            Some(start) => parse_version(start).is_some_and(|start| *version >= start),
        };
        let before = match &self.end {
            None => true,
            Some(End::Fixed(fixed)) => parse_version(fixed).is_some_and(|fixed| *version < fixed),
            Some(End::LastAffected(last)) => parse_version(last).is_some_and(|last| *version <= last),
        };
        after && before
    }
}

/// A stretch of versions from `lo` (inclusive; `None` = the start) to `hi`.
struct Stretch {
    lo: Option<Version>,
    hi: Hi,
}

enum Hi {
    /// Every later version.
    Open,
    /// Up to, not including (a fix).
    Before(Version),
    /// Up to and including (a last affected or exact version).
    Through(Version),
}

impl Stretch {
    fn of_span(span: &Span) -> Option<Stretch> {
        let lo = match &span.introduced {
            None => None,
            Some(v) => Some(parse_version(v)?),
        };
        let hi = match &span.end {
            None => Hi::Open,
            Some(End::Fixed(v)) => Hi::Before(parse_version(v)?),
            Some(End::LastAffected(v)) => Hi::Through(parse_version(v)?),
        };
        Some(Stretch { lo, hi })
    }

    fn is_empty(&self) -> bool {
        match (&self.lo, &self.hi) {
            (None, _) | (_, Hi::Open) => false,
            (Some(lo), Hi::Before(hi)) => lo >= hi,
            (Some(lo), Hi::Through(hi)) => lo > hi,
        }
    }

    /// Whether a stretch starting at `lo` (sorted after this one) overlaps or touches it.
    fn reaches(&self, lo: &Option<Version>) -> bool {
        match (&self.hi, lo) {
            (Hi::Open, _) | (_, None) => true,
            (Hi::Before(hi) | Hi::Through(hi), Some(lo)) => lo <= hi,
        }
    }

    fn range(&self) -> String {
        match (&self.lo, &self.hi) {
            (None, Hi::Open) => "*".to_owned(),
            (None, Hi::Before(hi)) => format!("<{hi}"),
            (None, Hi::Through(hi)) => format!("<={hi}"),
            (Some(lo), Hi::Open) => format!(">={lo}"),
            (Some(lo), Hi::Before(hi)) => format!(">={lo} <{hi}"),
            (Some(lo), Hi::Through(hi)) if lo == hi => lo.to_string(),
            (Some(lo), Hi::Through(hi)) => format!(">={lo} <={hi}"),
        }
    }
}

impl Hi {
    /// The higher of two ends (for stretches that overlap).
    fn max(a: Hi, b: Hi) -> Hi {
        match (a, b) {
            (Hi::Open, _) | (_, Hi::Open) => Hi::Open,
            (Hi::Before(x), Hi::Before(y)) => Hi::Before(x.max(y)),
            (Hi::Through(x), Hi::Through(y)) => Hi::Through(x.max(y)),
            (Hi::Before(x), Hi::Through(y)) | (Hi::Through(y), Hi::Before(x)) => {
                if x > y {
                    Hi::Before(x)
                } else {
                    Hi::Through(y)
                }
            }
        }
    }
}

/// One finding per advisory, not per alias: records that share an id or an alias (the same
/// GHSA from a checkout and an OSV export, a MAL- record naming its GHSA) are one. The kept
/// record is the GHSA-id one, else the newest `modified`; it takes the others' names as
/// aliases, and their packages it does not name itself, so no affected package is lost.
/// Groups keep the order of their first record.
pub fn dedupe_aliases(advisories: Vec<Advisory>) -> Vec<Advisory> {
    let mut parent: Vec<usize> = (0..advisories.len()).collect();
    {
        let mut first: HashMap<&str, usize> = HashMap::new();
        for (i, advisory) in advisories.iter().enumerate() {
            for name in std::iter::once(&advisory.id).chain(&advisory.aliases) {
                match first.get(name.as_str()) {
                    Some(&j) => union(&mut parent, i, j),
                    None => {
                        first.insert(name, i);
                    }
                }
            }
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of_root: HashMap<usize, usize> = HashMap::new();
    for i in 0..advisories.len() {
        let root = find(&mut parent, i);
        let g = *group_of_root.entry(root).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }

    let mut slots: Vec<Option<Advisory>> = advisories.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(groups.len());
    for members in groups {
        let mut records: Vec<Advisory> = members.iter().filter_map(|&i| slots[i].take()).collect();
        let Some(best) = (0..records.len()).reduce(|best, i| {
            if preferred(&records[i], &records[best]) {
                i
            } else {
                best
            }
        }) else {
            continue;
        };
        let mut kept = records.swap_remove(best);
        for other in records {
            for name in std::iter::once(other.id).chain(other.aliases) {
                if name != kept.id && !kept.aliases.contains(&name) {
                    kept.aliases.push(name);
                }
            }
            for affected in other.affected {
                if !kept.affected.iter().any(|a| a.package == affected.package) {
                    kept.affected.push(affected);
                }
            }
        }
        out.push(kept);
    }
    out
}

/// Whether `a` is kept over `b`: a GHSA id first (npm's own data names GHSA), then the newest.
fn preferred(a: &Advisory, b: &Advisory) -> bool {
    let key = |x: &Advisory| (x.id.starts_with("GHSA-"), x.modified);
    key(a) > key(b)
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    // The lower index stays the root, so a group is named by its first record.
    let (low, high) = if ra < rb { (ra, rb) } else { (rb, ra) };
    parent[high] = low;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::range::VersionRange;

    fn fixture(path: &str) -> Vec<u8> {
        let full = format!("{}/tests/fixtures/osv/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
    }

    pub(crate) fn advisory(path: &str) -> Advisory {
        match parse_osv(&fixture(path)) {
            Ok(Parsed::Advisory(a)) => a,
            other => panic!("{path}: {other:?}"),
        }
    }

    pub(crate) const LODASH_COMMAND_INJECTION: &str =
        "github-reviewed/2021/05/GHSA-35jh-r3h4-6jhm/GHSA-35jh-r3h4-6jhm.json";
    const LODASH_PROTOTYPE_POLLUTION: &str = "github-reviewed/2020/07/GHSA-p6mc-m468-83gw/GHSA-p6mc-m468-83gw.json";
    const LODASH_REDOS: &str = "github-reviewed/2022/01/GHSA-29mw-wpgm-hmr9/GHSA-29mw-wpgm-hmr9.json";
    const EVENT_STREAM: &str = "github-reviewed/2018/11/GHSA-mh6f-8j2x-4483/GHSA-mh6f-8j2x-4483.json";
    const MAL_FROM_START: &str = "malicious/MAL-2025-6974.json";
    const MAL_VERSIONS: &str = "malicious/MAL-2025-191025.json";
    const ALL: [&str; 6] = [
        LODASH_COMMAND_INJECTION,
        LODASH_PROTOTYPE_POLLUTION,
        LODASH_REDOS,
        EVENT_STREAM,
        MAL_FROM_START,
        MAL_VERSIONS,
    ];

    /// A record with these affected entries (and a severity given by GitHub).
    fn record(affected: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "id": "GHSA-test-test-test",
            "modified": "2024-01-01T00:00:00Z",
            "affected": affected,
            "database_specific": {"severity": "LOW"},
        })
    }

    fn parse(value: &serde_json::Value) -> Result<Parsed, OsvError> {
        parse_osv(value.to_string().as_bytes())
    }

    fn parsed(value: &serde_json::Value) -> Advisory {
        match parse(value) {
            Ok(Parsed::Advisory(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    fn npm(name: &str, ranges: serde_json::Value, versions: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"package": {"ecosystem": "npm", "name": name}, "ranges": ranges, "versions": versions})
    }

    fn ecosystem(events: serde_json::Value) -> serde_json::Value {
        serde_json::json!([{"type": "ECOSYSTEM", "events": events}])
    }

    #[test]
    fn the_lodash_command_injection_advisory_reads_as_github_shows_it() {
        let a = advisory(LODASH_COMMAND_INJECTION);
        assert_eq!(a.id, "GHSA-35jh-r3h4-6jhm");
        assert_eq!(a.aliases, ["CVE-2021-23337"]);
        assert_eq!(a.summary, "Command Injection in lodash");
        assert_eq!(a.severity, Severity::High);
        let cvss = a.cvss.as_ref().expect("a CVSS vector");
        assert!((cvss.score - 7.2).abs() < 1e-9, "{}", cvss.score);
        assert_eq!(cvss.vector, "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H");
        assert_eq!(a.cwe, ["CWE-77", "CWE-94"]);
        assert_eq!(a.url, "https://github.com/advisories/GHSA-35jh-r3h4-6jhm");
        assert_eq!(a.published, Some(1_620_317_151_000));
        assert_eq!(a.modified, 1_713_379_159_000);
        assert!(!a.malware);
        assert_eq!(
            a.packages().collect::<Vec<_>>(),
            ["lodash", "lodash-es", "lodash.template", "lodash-template"]
        );
        assert!(a.affects("lodash", "4.17.20"));
        assert!(a.affects("lodash", "0.1.0"));
        assert!(
            a.affects("lodash", "4.17.21-rc.1"),
            "a prerelease of the fix is before it"
        );
        assert!(!a.affects("lodash", "4.17.21"));
        assert!(!a.affects("underscore", "1.0.0"));
        assert!(!a.affects("lodash", "not-a-version"));
        assert_eq!(a.vulnerable_versions("lodash"), "<4.17.21");
        assert_eq!(a.patched_versions("lodash"), ">=4.17.21");
        assert_eq!(a.vulnerable_versions("lodash.template"), "<=4.5.0");
        assert_eq!(
            a.patched_versions("lodash.template"),
            "<0.0.0",
            "last_affected names no fix"
        );
    }

    #[test]
    fn an_introduced_version_starts_the_span() {
        let a = advisory(LODASH_PROTOTYPE_POLLUTION);
        assert_eq!(a.vulnerable_versions("lodash"), ">=3.7.0 <4.17.19");
        assert_eq!(a.patched_versions("lodash"), ">=4.17.19");
        assert!(!a.affects("lodash", "3.6.0"));
        assert!(
            !a.affects("lodash", "3.7.0-beta"),
            "a prerelease of the start is before it"
        );
        assert!(a.affects("lodash", "3.7.0"));
        assert!(a.affects("lodash", "4.17.18"));
        assert!(!a.affects("lodash", "4.17.19"));
        assert_eq!(a.vulnerable_versions("lodash.pick"), ">=4.0.0 <=4.4.0");
        assert!(a.affects("lodash.pick", "4.4.0"));
        assert!(
            !a.affects("lodash.pick", "4.4.1-0"),
            "last_affected includes only up to itself"
        );
    }

    #[test]
    fn severity_comes_from_cvss_then_github_then_a_default() {
        assert_eq!(advisory(LODASH_REDOS).severity, Severity::Moderate);
        assert_eq!(advisory(EVENT_STREAM).severity, Severity::Critical);

        let v4 = serde_json::json!({
            "id": "GHSA-aaaa-bbbb-cccc", "modified": "2024-01-01T00:00:00Z",
            "severity": [
                {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:L"},
                {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"},
            ],
            "affected": [npm("x", ecosystem(serde_json::json!([{"introduced": "0"}])), serde_json::json!([]))],
            "database_specific": {"severity": "LOW"},
        });
        let a = parsed(&v4);
        assert_eq!(a.severity, Severity::Critical, "the highest score wins: {:?}", a.cvss);
        assert!(
            a.cvss
                .as_ref()
                .is_some_and(|c| c.vector.starts_with("CVSS:4.0/") && c.score >= 9.0)
        );

        let mut github_only = v4.clone();
        github_only["severity"] = serde_json::json!([{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"}]);
        github_only["database_specific"]["severity"] = "MODERATE".into();
        let a = parsed(&github_only);
        assert_eq!((a.severity, a.cvss), (Severity::Moderate, None));

        let mut unrated = github_only.clone();
        unrated["database_specific"] = serde_json::json!({"severity": null});
        assert_eq!(parsed(&unrated).severity, Severity::Moderate);

        let mut bad_vector = v4.clone();
        bad_vector["severity"] = serde_json::json!([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:X"}]);
        assert_eq!(
            parsed(&bad_vector).severity,
            Severity::Low,
            "falls back to GitHub's rating"
        );
        bad_vector["database_specific"] = serde_json::json!({});
        match parse(&bad_vector) {
            Err(OsvError::Unusable { id, why }) => {
                assert_eq!(id, "GHSA-aaaa-bbbb-cccc");
                assert!(why.contains("CVSS:3.1/AV:X"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malware_is_always_critical() {
        let a = advisory(MAL_FROM_START);
        assert!(a.malware);
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.url, "https://osv.dev/vulnerability/MAL-2025-6974");
        assert_eq!(a.vulnerable_versions("0-snap-score318"), "*");
        assert_eq!(a.patched_versions("0-snap-score318"), "<0.0.0");
        assert!(a.affects("0-snap-score318", "0.0.0-alpha"));
        assert!(a.affects("0-snap-score318", "99.0.0"));

        let a = advisory(MAL_VERSIONS);
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(
            a.url, "https://github.com/advisories/GHSA-q2q8-5wg4-g6jq",
            "the GHSA alias"
        );
        assert_eq!(a.vulnerable_versions("02-echo"), "0.0.7");
        assert!(a.affects("02-echo", "0.0.7"));
        assert!(!a.affects("02-echo", "0.0.8"));
        assert!(a.details.starts_with("\n---"));
        assert_eq!(a.summary, "Malicious code in 02-echo (npm)");

        let mut low = serde_json::to_value(serde_json::json!({
            "id": "MAL-2099-1", "modified": "2099-01-01T00:00:00Z",
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:L"}],
            "affected": [npm("x", serde_json::json!([]), serde_json::json!(["1.0.0"]))],
        }))
        .expect("json");
        assert_eq!(parsed(&low).severity, Severity::Critical);
        low["severity"] = serde_json::json!([{"type": "CVSS_V3", "score": "nonsense"}]);
        assert_eq!(parsed(&low).severity, Severity::Critical, "no need for a score");
    }

    #[test]
    fn several_spans_exact_versions_and_unordered_events() {
        let a = parsed(&record(serde_json::json!([
            npm(
                "multi",
                ecosystem(serde_json::json!([
                    {"introduced": "2.0.0"}, {"fixed": "2.3.0"},
                    {"introduced": "1.0.0"}, {"fixed": "1.5.0"},
                    {"introduced": "3.0.0-beta.1"},
                    {"limit": "9.9.9"},
                ])),
                serde_json::json!(["0.9.0", "1.2.0", "0.9.0"])
            ),
            // A second entry for the same package (GHSA writes one per branch).
            npm(
                "multi",
                ecosystem(serde_json::json!([{"introduced": "0.1.0"}, {"last_affected": "0.2.0"}])),
                serde_json::json!([])
            ),
        ])));
        assert_eq!(a.affected.len(), 1, "one entry per package");
        assert_eq!(a.affected[0].versions, ["0.9.0", "1.2.0"]);
        assert_eq!(
            a.vulnerable_versions("multi"),
            ">=0.1.0 <=0.2.0 || 0.9.0 || >=1.0.0 <1.5.0 || >=2.0.0 <2.3.0 || >=3.0.0-beta.1"
        );
        assert_eq!(a.patched_versions("multi"), ">=1.5.0 <2.0.0 || >=2.3.0 <3.0.0-beta.1");
        for (version, affected) in [
            ("0.0.1", false),
            ("0.2.0", true),
            ("0.9.0", true),
            ("0.9.1", false),
            ("1.4.99", true),
            ("1.5.0", false),
            ("2.0.0-rc.1", false),
            ("2.2.0", true),
            ("2.9.0", false),
            ("3.0.0-alpha", false),
            ("3.0.0-beta.1", true),
            ("3.0.0", true),
        ] {
            assert_eq!(a.affects("multi", version), affected, "{version}");
        }
    }

    #[test]
    fn event_stream_lists_the_exact_version_too() {
        let a = advisory(EVENT_STREAM);
        assert_eq!(a.vulnerable_versions("event-stream"), ">=3.3.6 <4.0.0");
        assert_eq!(a.patched_versions("event-stream"), ">=4.0.0");
        assert!(a.affects("event-stream", "3.3.6"));
        assert!(!a.affects("event-stream", "3.3.5"));
        assert_eq!(a.vulnerable_versions("flatmap-stream"), "*");
        assert!(a.aliases.is_empty());
    }

    /// Versions around every bound of a fixture, prereleases included.
    fn probes(a: &Advisory, package: &str) -> Vec<String> {
        let mut bounds: Vec<String> = vec!["0.0.0".into(), "0.0.1".into(), "1.0.0".into(), "99.0.0".into()];
        for affected in a.affected.iter().filter(|x| x.package == package) {
            bounds.extend(affected.versions.iter().cloned());
            for span in &affected.spans {
                bounds.extend(span.introduced.iter().cloned());
                match &span.end {
                    Some(End::Fixed(v) | End::LastAffected(v)) => bounds.push(v.clone()),
                    None => {}
                }
            }
        }
        let mut out = Vec::new();
        for b in bounds {
            let v = parse_version(&b).expect("a version");
            let (ma, mi, pa) = (v.major(), v.minor(), v.patch());
            out.push(format!("{ma}.{mi}.{pa}"));
            out.push(format!("{ma}.{mi}.{pa}-0"));
            out.push(format!("{ma}.{mi}.{pa}-beta.2"));
            out.push(format!("{ma}.{mi}.{}", pa + 1));
            out.push(format!("{ma}.{mi}.{}-rc.1", pa + 1));
            out.push(format!("{ma}.{}.0", mi + 1));
            out.push(format!("{}.0.0-0", ma + 1));
            if pa > 0 {
                out.push(format!("{ma}.{mi}.{}", pa - 1));
            }
            if mi > 0 {
                out.push(format!("{ma}.{}.99", mi - 1));
            }
        }
        out
    }

    #[test]
    fn range_texts_agree_with_affects_on_every_fixture() {
        let mut checked = 0;
        let mut fixtures: Vec<Advisory> = ALL.iter().map(|p| advisory(p)).collect();
        fixtures.push(parsed(&record(serde_json::json!([npm(
            "multi",
            ecosystem(serde_json::json!([
                {"introduced": "1.0.0"}, {"fixed": "1.5.0"}, {"introduced": "1.2.0-alpha"}, {"last_affected": "1.7.0"},
                {"introduced": "2.0.0"}, {"fixed": "2.0.0"}, {"introduced": "3.0.0-rc.1"}, {"fixed": "3.1.0"},
            ])),
            serde_json::json!(["0.5.0", "1.6.0-beta.2", "3.0.5", "4.0.0"])
        ),]))));
        for a in &fixtures {
            for package in a.packages() {
                let vulnerable = VersionRange::parse(&a.vulnerable_versions(package)).expect("a range");
                let patched = VersionRange::parse(&a.patched_versions(package)).expect("a range");
                for version in probes(a, package) {
                    // npm's `*` with prereleases is every version; nodejs-semver's parsed `*`
                    // leaves out `0.0.0-…` (its `VersionRange::any()` does not).
                    let in_range = if vulnerable.as_str() == "*" {
                        VersionRange::any().contains(&version)
                    } else {
                        vulnerable.contains(&version)
                    };
                    assert_eq!(
                        in_range,
                        a.affects(package, &version),
                        "{} {package}@{version} vs {vulnerable}",
                        a.id
                    );
                    if patched.as_str() != NOTHING_PATCHED && patched.contains(&version) {
                        assert!(
                            !a.affects(package, &version),
                            "{} {package}@{version} in {patched}",
                            a.id
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 500, "{checked}");
    }

    #[test]
    fn withdrawn_and_other_ecosystems_are_ignored() {
        assert!(matches!(
            parse_osv(&fixture("bad/withdrawn.json")),
            Ok(Parsed::Ignored(Ignored::Withdrawn))
        ));
        let pypi = serde_json::json!({
            "id": "PYSEC-2021-1", "modified": "2021-01-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": "PyPI", "name": "django"}, "versions": ["1.0"]}],
        });
        assert!(matches!(parse(&pypi), Ok(Parsed::Ignored(Ignored::NotNpm))));
        let unreviewed =
            serde_json::json!({"id": "GHSA-xxxx-xxxx-xxxx", "modified": "2021-01-01T00:00:00Z", "affected": []});
        assert!(matches!(parse(&unreviewed), Ok(Parsed::Ignored(Ignored::NotNpm))));
    }

    #[test]
    fn malformed_records_are_told_apart_from_unusable_ones() {
        let e = parse_osv(&fixture("bad/malformed.json")).expect_err("cut off");
        assert!(matches!(e, OsvError::Malformed(_)), "{e}");
        for bad in [
            serde_json::json!({"modified": "2021-01-01T00:00:00Z"}),
            serde_json::json!({"id": 5, "modified": "2021-01-01T00:00:00Z"}),
            serde_json::json!({"id": "GHSA-1", "modified": "yesterday"}),
            serde_json::json!({"id": "GHSA-1"}),
            serde_json::json!({"id": "../../etc", "modified": "2021-01-01T00:00:00Z"}),
            serde_json::json!({"id": "GHSA-1", "modified": "2021-01-01T00:00:00Z", "aliases": "CVE-1"}),
            serde_json::json!({
                "id": "GHSA-1", "modified": "2021-01-01T00:00:00Z",
                "affected": [{"package": {"ecosystem": "npm"}}],
            }),
            serde_json::json!([1, 2]),
        ] {
            assert!(matches!(parse(&bad), Err(OsvError::Malformed(_))), "{bad}");
        }
        let e = parse(&serde_json::json!({"id": "GHSA-1", "modified": "yesterday"})).expect_err("bad time");
        assert!(
            e.to_string().contains("GHSA-1") && e.to_string().contains("yesterday"),
            "{e}"
        );

        match parse_osv(&fixture("bad/invalid-range.json")) {
            Err(OsvError::Unusable { id, why }) => {
                assert_eq!(id, "GHSA-xxxx-bad0-rnge");
                assert!(why.contains("left-pad") && why.contains("one point two"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        for (affected, says) in [
            (
                npm(
                    "x",
                    serde_json::json!([{"type": "ECOSYSTEM", "events": [{"introduced": "1.0.0", "fixed": "2.0.0"}]}]),
                    serde_json::json!([]),
                ),
                "exactly one",
            ),
            (
                npm(
                    "x",
                    serde_json::json!([{"type": "ECOSYSTEM", "events": [{}]}]),
                    serde_json::json!([]),
                ),
                "exactly one",
            ),
            (
                npm(
                    "x",
                    serde_json::json!([{"type": "SOMETHING", "events": []}]),
                    serde_json::json!([]),
                ),
                "SOMETHING",
            ),
            (npm("x", serde_json::json!([]), serde_json::json!(["1.0"])), "\"1.0\""),
        ] {
            match parse(&record(serde_json::json!([affected]))) {
                Err(OsvError::Unusable { why, .. }) => assert!(why.contains(says), "{why}"),
                other => panic!("{other:?}"),
            }
        }
        let git = parsed(&record(serde_json::json!([npm(
            "x",
            serde_json::json!([{"type": "GIT", "repo": "https://example.com/x", "events": [{"introduced": "abc123"}]}]),
            serde_json::json!([]),
        )])));
        assert_eq!(git.vulnerable_versions("x"), "<0.0.0-0", "GIT ranges name no version");
        assert!(!git.affects("x", "0.0.0-0"));
    }

    #[test]
    fn texts_are_bounded_and_summaries_fall_back() {
        let long = "é".repeat(3000);
        let mut value = record(serde_json::json!([npm(
            "x",
            serde_json::json!([]),
            serde_json::json!(["1.0.0"])
        )]));
        value["details"] = format!("\n\n  First line  \n{long}").into();
        let a = parsed(&value);
        assert!(a.details.len() <= MAX_DETAILS && a.details.len() > MAX_DETAILS - 4);
        assert_eq!(a.summary, "First line");
        value["details"] = serde_json::Value::Null;
        value["summary"] = "   ".into();
        assert_eq!(parsed(&value).summary, "GHSA-test-test-test");
        value["summary"] = long.into();
        assert!(parsed(&value).summary.len() <= MAX_SUMMARY);
        value["aliases"] = serde_json::json!(["CVE-2024-1", "GHSA-test-test-test", "CVE-2024-1", "<a href>", ""]);
        assert_eq!(
            parsed(&value).aliases,
            ["CVE-2024-1"],
            "own id, repeats and non-identifiers dropped"
        );
    }

    #[test]
    fn versions_are_stored_canonically() {
        let a = parsed(&record(serde_json::json!([npm(
            "x",
            ecosystem(serde_json::json!([{"introduced": "v1.0.0"}, {"fixed": "2.0.0+build.5"}])),
            serde_json::json!([])
        )])));
        assert_eq!(a.vulnerable_versions("x"), ">=1.0.0 <2.0.0");
        assert!(a.affects("x", "1.5.0+anything"));
    }

    #[test]
    fn aliases_make_one_finding() {
        let ghsa = advisory(LODASH_COMMAND_INJECTION);
        let mut osv_copy = ghsa.clone();
        osv_copy.modified += 1000;
        osv_copy.summary = "newer copy".into();
        let mut mal = advisory(MAL_VERSIONS);
        mal.aliases.push("GHSA-35jh-r3h4-6jhm".into());
        let mut cve_twin = advisory(LODASH_REDOS);
        cve_twin.id = "PYSEC-0000-1".into();
        cve_twin.aliases = vec!["CVE-2021-23337".into()];
        cve_twin.affected[0].package = "not-lodash".into();
        let other = advisory(LODASH_REDOS);

        let kept = dedupe_aliases(vec![mal, other.clone(), ghsa, cve_twin, osv_copy]);
        assert_eq!(kept.len(), 2, "{:?}", kept.iter().map(|a| &a.id).collect::<Vec<_>>());
        assert_eq!(kept[0].id, "GHSA-35jh-r3h4-6jhm", "the GHSA id wins over the MAL- one");
        assert_eq!(kept[0].summary, "newer copy", "then the newest");
        assert!(kept[0].aliases.contains(&"MAL-2025-191025".to_owned()));
        assert!(kept[0].aliases.contains(&"PYSEC-0000-1".to_owned()));
        assert!(!kept[0].aliases.contains(&"GHSA-35jh-r3h4-6jhm".to_owned()));
        assert!(kept[0].packages().any(|p| p == "02-echo"), "no package is lost");
        assert!(kept[0].packages().any(|p| p == "not-lodash"));
        assert_eq!(kept[1], other);
    }

    #[test]
    fn advisories_round_trip_through_json() {
        let a = advisory(LODASH_PROTOTYPE_POLLUTION);
        let text = serde_json::to_string(&a).expect("serialize");
        assert!(text.contains(r#""end":{"fixed":"4.17.19"}"#), "{text}");
        assert_eq!(serde_json::from_str::<Advisory>(&text).expect("deserialize"), a);
    }
}
