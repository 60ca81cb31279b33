//! The one evaluator: a policy, what is known of a package's versions, and the
//! advisories, exceptions and reviews that apply → a [`Decision`] per version.
//!
//! Pure and cheap (no IO; a package's versions are decided together because two
//! rules compare a version with the ones before it), so it runs wherever a version
//! can enter or be served: admission, packument builds, tarball requests, a
//! lockfile check.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::advisory::Advisory;
use crate::document::{Action, Mode, Policy, Rule};
use crate::license::{Declared, LicenseVerdict};
use crate::range::{VersionRange, parse_version};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// What the tarball showed when it was inspected (unknown until it was pulled).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TarballFacts {
    /// A `binding.gyp` at the package root: npm runs `node-gyp rebuild` on install.
    #[serde(default)]
    pub gyp: bool,
    /// The manifest field that differs from the tarball's `package.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<String>,
}

/// One version as the evaluator sees it.
pub struct Subject<'a> {
    pub version: &'a str,
    pub manifest: &'a Map<String, Value>,
    /// `time[version]`: when it was first published anywhere.
    pub published_at: Option<Millis>,
    /// Published to this registry (not pulled, not promoted).
    pub published_here: bool,
    /// The registry holds it already (a frozen registry keeps what it holds).
    pub held: bool,
    pub tarball: Option<&'a TarballFacts>,
}

/// An admin's time-limited waiver of one rule for a package's versions in a range.
#[derive(Debug, Clone)]
pub struct Exception {
    pub id: i64,
    pub package: String,
    pub range: VersionRange,
    pub rule: Rule,
    pub expires_at: Millis,
    pub reason: String,
}

/// A registry admin's review of a quarantined version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "verdict")]
pub enum Review {
    Approved { reason: Option<String> },
    Rejected { reason: Option<String> },
}

/// What is known besides the versions themselves.
pub struct Context<'a> {
    pub now: Millis,
    /// Advisories naming this package (others are ignored anyway).
    pub advisories: &'a [Advisory],
    pub exceptions: &'a [Exception],
    pub reviews: &'a HashMap<String, Review>,
}

/// The outcome for one version, strongest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    /// Served, with a notice.
    Warn,
    /// Not served until a registry admin approves it.
    Quarantine,
    /// Never served (or, with `until`, not before then).
    Block,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Warn => "warn",
            Verdict::Quarantine => "quarantine",
            Verdict::Block => "block",
        }
    }

    pub fn served(self) -> bool {
        self <= Verdict::Warn
    }

    fn of(action: Action) -> Option<Verdict> {
        match action {
            Action::Off => None,
            Action::Warn => Some(Verdict::Warn),
            Action::Quarantine => Some(Verdict::Quarantine),
            Action::Block => Some(Verdict::Block),
        }
    }
}

/// Why a finding does not count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum Waiver {
    /// An `[[allow]]` entry of the policy.
    Allow { reason: String },
    Exception {
        id: i64,
        expires_at: Millis,
        reason: String,
    },
    /// A registry admin approved the quarantined version.
    Approved,
}

/// What one rule said of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: Rule,
    pub verdict: Verdict,
    /// `false` in audit mode: recorded, not acted on.
    pub enforced: bool,
    /// The evidence, for a person: which advisory, license, age, script.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waived: Option<Waiver>,
}

impl Finding {
    fn counts(&self) -> bool {
        self.enforced && self.waived.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    /// Every rule that objected, counted or not.
    pub findings: Vec<Finding>,
    /// When this decision changes by itself (a release age passes, an exception expires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Millis>,
}

impl Decision {
    pub fn allow() -> Decision {
        Decision {
            verdict: Verdict::Allow,
            findings: Vec::new(),
            until: None,
        }
    }

    /// The finding that decided (the strongest that counts).
    pub fn decisive(&self) -> Option<&Finding> {
        self.findings.iter().filter(|f| f.counts()).max_by_key(|f| f.verdict)
    }

    /// What audit mode would have done.
    pub fn would(&self) -> Verdict {
        self.findings
            .iter()
            .filter(|f| f.waived.is_none())
            .map(|f| f.verdict)
            .max()
            .unwrap_or(Verdict::Allow)
    }

    /// The sentence a person at the terminal reads: which rule, why, what to do.
    pub fn explain(&self, registry: &str, name: &str, version: &str) -> String {
        let Some(finding) = self.decisive() else {
            return format!("{name}@{version} is allowed by the policy of registry \"{registry}\"");
        };
        let spec = format!("{name}@{version}");
        let mut text = match self.verdict {
            Verdict::Block if finding.rule == Rule::ReleaseAge => {
                format!(
                    "{spec} is held back by the policy of registry \"{registry}\" (release_age): {}",
                    finding.reason
                )
            }
            Verdict::Block => format!(
                "{spec} is blocked by the policy of registry \"{registry}\" ({}): {}",
                finding.rule, finding.reason
            ),
            Verdict::Quarantine => format!(
                "{spec} is quarantined by the policy of registry \"{registry}\" ({}): {}",
                finding.rule, finding.reason
            ),
            Verdict::Warn | Verdict::Allow => format!(
                "{spec} has a warning from the policy of registry \"{registry}\" ({}): {}",
                finding.rule, finding.reason
            ),
        };
        let advice = match (self.verdict, finding.rule) {
            (_, Rule::Malware) => " Remove it from your dependencies.".to_owned(),
            (Verdict::Warn | Verdict::Allow, _) => String::new(),
            (_, Rule::ReleaseAge) => " Until then, use an older version.".to_owned(),
            (_, Rule::Freeze) => " Ask a registry admin to lift the freeze.".to_owned(),
            (_, Rule::Review) => " A registry admin rejected it; use another version.".to_owned(),
            (Verdict::Quarantine, _) => format!(
                " It waits for review: a registry admin can approve it (gatehouse quarantine approve {registry} {spec}), or use another version."
            ),
            (_, rule) => format!(
                " Use another version, or ask a registry admin for an exception (gatehouse policy exception add {registry} {name}@{version} --rule {rule} --expires 7d --reason ...)."
            ),
        };
        if !advice.is_empty() && !text.ends_with('.') {
            text.push('.');
        }
        text.push_str(&advice);
        text
    }
}

/// Decides every version of `name`. `versions` in any order; decisions in the same order.
pub fn evaluate(policy: &Policy, name: &str, versions: &[Subject<'_>], ctx: &Context<'_>) -> Vec<Decision> {
    // Lower versions by precedence, for the rules that compare with what came before.
    let mut order: Vec<(nodejs_semver::Version, usize)> = versions
        .iter()
        .enumerate()
        .filter_map(|(i, s)| parse_version(s.version).map(|v| (v, i)))
        .collect();
    order.sort();
    let mut previous: HashMap<usize, usize> = HashMap::new();
    let mut attested_major: HashMap<usize, bool> = HashMap::new();
    let mut seen_attested: HashMap<u64, bool> = HashMap::new();
    for (pos, (parsed, index)) in order.iter().enumerate() {
        if pos > 0 {
            previous.insert(*index, order[pos - 1].1);
        }
        let earlier = seen_attested.get(&parsed.major()).copied().unwrap_or(false);
        attested_major.insert(*index, earlier);
        if has_attestations(versions[*index].manifest) {
            seen_attested.insert(parsed.major(), true);
        }
    }

    versions
        .iter()
        .enumerate()
        .map(|(i, subject)| {
            let before = Before {
                previous: previous.get(&i).map(|&p| &versions[p]),
                attested_in_major: attested_major.get(&i).copied().unwrap_or(false),
            };
            decide(policy, name, subject, &before, ctx)
        })
        .collect()
}

/// What came before a version.
struct Before<'a> {
    previous: Option<&'a Subject<'a>>,
    /// A lower version of the same major line carried provenance.
    attested_in_major: bool,
}

fn decide(policy: &Policy, name: &str, subject: &Subject<'_>, before: &Before<'_>, ctx: &Context<'_>) -> Decision {
    let version = subject.version;
    let mut findings = Vec::new();
    let mut until: Option<Millis> = None;
    let mut soonest = |t: Millis| until = Some(until.map_or(t, |u: Millis| u.min(t)));

    let affecting: Vec<&Advisory> = ctx.advisories.iter().filter(|a| a.affects(name, version)).collect();
    for malware in affecting.iter().filter(|a| a.malware) {
        findings.push(Finding {
            rule: Rule::Malware,
            verdict: Verdict::Block,
            enforced: true,
            reason: format!(
                "{} reports malicious code: {} ({})",
                malware.id, malware.summary, malware.url
            ),
            waived: None,
        });
    }

    let mut push = |rule: Rule, action: Action, mode: Mode, reason: String| {
        if let Some(verdict) = Verdict::of(action) {
            findings.push(Finding {
                rule,
                verdict,
                enforced: mode == Mode::Enforce,
                reason,
                waived: None,
            });
        }
    };

    if policy.freeze && !subject.held {
        push(
            Rule::Freeze,
            Action::Block,
            Mode::Enforce,
            "the registry is frozen: it keeps what it holds and takes no new versions".into(),
        );
    }
    for entry in policy.deny.iter().filter(|e| e.matches(name, version)) {
        let why = if entry.reason.is_empty() {
            "no reason given"
        } else {
            &entry.reason
        };
        push(
            Rule::Deny,
            Action::Block,
            policy.mode,
            format!(
                "listed in [[deny]] as {}@{} ({why})",
                entry.package.as_str(),
                entry.range
            ),
        );
    }
    if let Some(rule) = &policy.vulnerabilities {
        let mut vulnerable: Vec<&&Advisory> = affecting.iter().filter(|a| !a.malware).collect();
        vulnerable.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
        if let Some(worst) = vulnerable.first() {
            let action = rule.action(worst.severity);
            let mut reason = String::new();
            for (n, advisory) in vulnerable.iter().take(3).enumerate() {
                if n > 0 {
                    reason.push_str("; ");
                }
                let _ = write!(reason, "{} ({}) {}", advisory.id, advisory.severity, advisory.summary);
                let patched = advisory.patched_versions(name);
                if !patched.is_empty() && patched != crate::advisory::NOTHING_PATCHED {
                    let _ = write!(reason, ", fixed in {patched}");
                }
            }
            if vulnerable.len() > 3 {
                let _ = write!(reason, "; and {} more", vulnerable.len() - 3);
            }
            push(Rule::Vulnerabilities, action, rule.mode, reason);
        }
    }
    if let Some(rule) = &policy.licenses {
        let declared = Declared::of(subject.manifest);
        let verdict = match &rule.list {
            Some(list) => list.judge(&declared),
            None => match declared {
                Declared::Missing => LicenseVerdict::Missing,
                Declared::SeeFile(_) | Declared::Unparseable(_) => LicenseVerdict::Unknown,
                _ => LicenseVerdict::Accepted,
            },
        };
        match verdict {
            LicenseVerdict::Accepted => {}
            LicenseVerdict::Refused(failed) => push(
                Rule::Licenses,
                rule.action,
                rule.mode,
                format!("license {declared} is not allowed here ({})", failed.join(", ")),
            ),
            LicenseVerdict::Unknown => push(
                Rule::Licenses,
                rule.unknown,
                rule.mode,
                format!("license {declared} cannot be classified"),
            ),
            LicenseVerdict::Missing => push(
                Rule::Licenses,
                rule.missing,
                rule.mode,
                "the version declares no license".into(),
            ),
        }
    }
    if let Some(rule) = &policy.release_age
        && let Some(published) = subject.published_at
        && !(subject.published_here && rule.exempt_published)
        && !rule.exclude.iter().any(|p| p.matches(name))
    {
        let old_enough_at = published.saturating_add(rule.min.millis);
        if ctx.now < old_enough_at {
            // No "N hours ago": the reason is stored, and must not change by the minute.
            push(
                Rule::ReleaseAge,
                rule.action,
                rule.mode,
                format!(
                    "published {}, less than the minimum release age of {} ago; served from {}",
                    iso(published),
                    rule.min,
                    iso(old_enough_at)
                ),
            );
            soonest(old_enough_at);
        }
    }
    if let Some(rule) = &policy.install_scripts
        && !rule.allow.iter().any(|p| p.matches(name))
        && let Some(scripts) = install_scripts(subject)
    {
        let introduced = before.previous.is_none_or(|p| install_scripts(p).is_none());
        if !rule.only_new || introduced {
            let reason = match (rule.only_new, before.previous) {
                (true, Some(p)) => format!("runs {scripts} on install, which {} did not", p.version),
                _ => format!("runs {scripts} on install"),
            };
            push(Rule::InstallScripts, rule.action, rule.mode, reason);
        }
    }
    if let Some(rule) = &policy.provenance
        && before.attested_in_major
        && !has_attestations(subject.manifest)
        && !rule.exclude.iter().any(|p| p.matches(name))
    {
        push(
            Rule::Provenance,
            rule.action,
            rule.mode,
            "earlier versions of this major line were published with provenance attestations; this one has none".into(),
        );
    }
    if let Some(field) = subject.tarball.and_then(|t| t.mismatch.as_deref()) {
        push(
            Rule::Manifest,
            policy.manifest.action,
            policy.manifest.mode,
            format!("the served manifest's {field} differ from the tarball's package.json (manifest confusion)"),
        );
    }
    if let Some(Review::Rejected { reason }) = ctx.reviews.get(version) {
        push(
            Rule::Review,
            Action::Block,
            Mode::Enforce,
            match reason {
                Some(reason) => format!("rejected by a registry admin: {reason}"),
                None => "rejected by a registry admin".into(),
            },
        );
    }

    // Waivers: malware is never waived.
    let allowed = policy.allow.iter().find(|e| e.matches(name, version));
    let approved = matches!(ctx.reviews.get(version), Some(Review::Approved { .. }));
    for finding in findings.iter_mut().filter(|f| f.rule != Rule::Malware) {
        if let Some(entry) = allowed
            && finding.rule != Rule::Review
        {
            finding.waived = Some(Waiver::Allow {
                reason: entry.reason.clone(),
            });
            continue;
        }
        if let Some(exception) = ctx.exceptions.iter().find(|e| {
            e.rule == finding.rule && e.package == name && e.range.contains(version) && e.expires_at > ctx.now
        }) {
            finding.waived = Some(Waiver::Exception {
                id: exception.id,
                expires_at: exception.expires_at,
                reason: exception.reason.clone(),
            });
            soonest(exception.expires_at);
            continue;
        }
        if approved && finding.verdict == Verdict::Quarantine {
            finding.waived = Some(Waiver::Approved);
        }
    }

    let verdict = findings
        .iter()
        .filter(|f| f.counts())
        .map(|f| f.verdict)
        .max()
        .unwrap_or(Verdict::Allow);
    Decision {
        verdict,
        findings,
        until,
    }
}

/// The install scripts a version runs, as npm would: `preinstall`, `install`,
/// `postinstall`, or the `node-gyp rebuild` a `binding.gyp` implies.
fn install_scripts(subject: &Subject<'_>) -> Option<String> {
    let scripts = subject.manifest.get("scripts").and_then(Value::as_object);
    let named: Vec<&str> = ["preinstall", "install", "postinstall"]
        .into_iter()
        .filter(|hook| {
            scripts
                .and_then(|s| s.get(*hook))
                .and_then(Value::as_str)
                .is_some_and(|s| !s.trim().is_empty())
        })
        .collect();
    if !named.is_empty() {
        return Some(named.join(", "));
    }
    let gyp = subject.tarball.is_some_and(|t| t.gyp)
        && subject.manifest.get("gypfile").and_then(Value::as_bool) != Some(false);
    if gyp {
        return Some("node-gyp rebuild (binding.gyp)".into());
    }
    // Upstream manifests not inspected yet: the registry's own flag.
    (subject.manifest.get("hasInstallScript").and_then(Value::as_bool) == Some(true))
        .then(|| "an install script".to_owned())
}

/// Whether a version runs install scripts (what `install_scripts` looks for), for
/// storing with it.
pub fn runs_install_scripts(manifest: &Map<String, Value>, tarball: Option<&TarballFacts>) -> bool {
    let subject = Subject {
        version: "",
        manifest,
        published_at: None,
        published_here: false,
        held: false,
        tarball,
    };
    install_scripts(&subject).is_some()
}

/// Whether a manifest carries provenance attestations (`dist.attestations`).
pub fn has_attestations(manifest: &Map<String, Value>) -> bool {
    manifest
        .get("dist")
        .and_then(|d| d.get("attestations"))
        .is_some_and(|a| a.is_object())
}

fn iso(millis: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const DAY: Millis = 86_400_000;
    const NOW: Millis = 1_800_000_000_000;

    struct Version {
        version: &'static str,
        manifest: Map<String, Value>,
        published_at: Option<Millis>,
        published_here: bool,
        held: bool,
        tarball: Option<TarballFacts>,
    }

    fn version(version: &'static str, manifest: Value) -> Version {
        let mut manifest = manifest.as_object().cloned().unwrap_or_default();
        manifest.insert("version".into(), json!(version));
        Version {
            version,
            manifest,
            published_at: Some(NOW - 30 * DAY),
            published_here: false,
            held: false,
            tarball: None,
        }
    }

    fn run(
        policy: &str,
        name: &str,
        versions: &[Version],
        reviews: &HashMap<String, Review>,
        exceptions: &[Exception],
    ) -> Vec<Decision> {
        let policy = Policy::parse(policy).expect("valid policy");
        let subjects: Vec<Subject<'_>> = versions
            .iter()
            .map(|v| Subject {
                version: v.version,
                manifest: &v.manifest,
                published_at: v.published_at,
                published_here: v.published_here,
                held: v.held,
                tarball: v.tarball.as_ref(),
            })
            .collect();
        let ctx = Context {
            now: NOW,
            advisories: &[],
            exceptions,
            reviews,
        };
        evaluate(&policy, name, &subjects, &ctx)
    }

    fn verdicts(decisions: &[Decision]) -> Vec<Verdict> {
        decisions.iter().map(|d| d.verdict).collect()
    }

    #[test]
    fn young_versions_are_held_until_old_enough_and_own_publishes_are_exempt() {
        let mut young = version("2.0.0", json!({}));
        young.published_at = Some(NOW - 5 * 3_600_000);
        let mut own = version("2.0.1", json!({}));
        own.published_at = Some(NOW - 3_600_000);
        own.published_here = true;
        let d = run(
            "[release_age]\nmin = \"3d\"\n",
            "pkg",
            &[version("1.0.0", json!({})), young, own],
            &HashMap::new(),
            &[],
        );
        assert_eq!(verdicts(&d), [Verdict::Allow, Verdict::Block, Verdict::Allow]);
        assert_eq!(d[1].until, Some(NOW - 5 * 3_600_000 + 3 * DAY));
        let text = d[1].explain("team", "pkg", "2.0.0");
        assert!(
            text.contains("held back") && text.contains("minimum release age of 3d") && text.contains("served from"),
            "{text}"
        );
    }

    #[test]
    fn install_scripts_only_new_flags_the_version_that_introduces_them() {
        let scripts = json!({"scripts": {"postinstall": "node steal.js"}});
        let d = run(
            "[install_scripts]\naction = \"quarantine\"\nonly_new = true\n",
            "pkg",
            &[
                version("1.0.0", json!({})),
                version("1.0.1", scripts.clone()),
                version("1.0.2", scripts),
            ],
            &HashMap::new(),
            &[],
        );
        assert_eq!(verdicts(&d), [Verdict::Allow, Verdict::Quarantine, Verdict::Allow]);
        assert!(d[1].findings[0].reason.contains("postinstall") && d[1].findings[0].reason.contains("1.0.0"));
    }

    #[test]
    fn a_binding_gyp_is_an_install_script_and_the_allow_list_exempts_a_package() {
        let mut gyp = version("1.0.0", json!({}));
        gyp.tarball = Some(TarballFacts {
            gyp: true,
            mismatch: None,
        });
        let policy = "[install_scripts]\naction = \"block\"\nallow = [\"sharp\"]\n";
        let d = run(policy, "native", std::slice::from_ref(&gyp), &HashMap::new(), &[]);
        assert_eq!(d[0].verdict, Verdict::Block);
        assert!(d[0].findings[0].reason.contains("node-gyp rebuild"));
        let d = run(policy, "sharp", &[gyp], &HashMap::new(), &[]);
        assert_eq!(d[0].verdict, Verdict::Allow);
    }

    #[test]
    fn deny_entries_block_and_allow_entries_waive() {
        let policy = "[[deny]]\npackage = \"event-stream\"\nrange = \"3.3.6\"\nreason = \"compromised release\"\n";
        let d = run(
            policy,
            "event-stream",
            &[version("3.3.5", json!({})), version("3.3.6", json!({}))],
            &HashMap::new(),
            &[],
        );
        assert_eq!(verdicts(&d), [Verdict::Allow, Verdict::Block]);
        let text = d[1].explain("default", "event-stream", "3.3.6");
        assert!(
            text.contains("(deny)") && text.contains("compromised release") && text.contains("exception add"),
            "{text}"
        );

        let policy = format!("{policy}[[allow]]\npackage = \"event-stream\"\nreason = \"vendored fork\"\n");
        let d = run(
            &policy,
            "event-stream",
            &[version("3.3.6", json!({}))],
            &HashMap::new(),
            &[],
        );
        assert_eq!(d[0].verdict, Verdict::Allow);
        assert!(matches!(d[0].findings[0].waived, Some(Waiver::Allow { .. })));
    }

    #[test]
    fn licenses_outside_the_allow_list_and_missing_ones_get_their_actions() {
        let policy =
            "[licenses]\nallow = [\"MIT\"]\naction = \"quarantine\"\nmissing = \"warn\"\nunknown = \"block\"\n";
        let d = run(
            policy,
            "pkg",
            &[
                version("1.0.0", json!({"license": "MIT"})),
                version("1.0.1", json!({"license": "GPL-3.0-only"})),
                version("1.0.2", json!({})),
                version("1.0.3", json!({"license": "SEE LICENSE IN EULA"})),
            ],
            &HashMap::new(),
            &[],
        );
        assert_eq!(
            verdicts(&d),
            [Verdict::Allow, Verdict::Quarantine, Verdict::Warn, Verdict::Block]
        );
    }

    #[test]
    fn audit_mode_records_without_acting() {
        let d = run(
            "mode = \"audit\"\n[[deny]]\npackage = \"x\"\n[install_scripts]\naction = \"block\"\n",
            "y",
            &[version("1.0.0", json!({"scripts": {"install": "make"}}))],
            &HashMap::new(),
            &[],
        );
        assert_eq!(d[0].verdict, Verdict::Allow);
        assert_eq!(d[0].would(), Verdict::Block);
        assert!(!d[0].findings[0].enforced);
    }

    #[test]
    fn exceptions_waive_one_rule_until_they_expire() {
        let policy = "[install_scripts]\naction = \"block\"\n";
        let pinned = [version("1.0.0", json!({"scripts": {"install": "make"}}))];
        let exception = |expires_at| Exception {
            id: 7,
            package: "pkg".into(),
            range: VersionRange::parse("^1").expect("valid"),
            rule: Rule::InstallScripts,
            expires_at,
            reason: "reviewed".into(),
        };
        let d = run(policy, "pkg", &pinned, &HashMap::new(), &[exception(NOW + DAY)]);
        assert_eq!(d[0].verdict, Verdict::Allow);
        assert_eq!(
            d[0].until,
            Some(NOW + DAY),
            "the decision changes when the exception expires"
        );
        let d = run(policy, "pkg", &pinned, &HashMap::new(), &[exception(NOW - 1)]);
        assert_eq!(d[0].verdict, Verdict::Block, "an expired exception no longer applies");
    }

    #[test]
    fn approval_lifts_a_quarantine_and_rejection_blocks() {
        let policy = "[install_scripts]\naction = \"quarantine\"\n";
        let pinned = [version("1.0.0", json!({"scripts": {"install": "make"}}))];
        let reviews = HashMap::from([("1.0.0".to_owned(), Review::Approved { reason: None })]);
        assert_eq!(run(policy, "pkg", &pinned, &reviews, &[])[0].verdict, Verdict::Allow);
        let reviews = HashMap::from([(
            "1.0.0".to_owned(),
            Review::Rejected {
                reason: Some("no".into()),
            },
        )]);
        let d = run(policy, "pkg", &pinned, &reviews, &[]);
        assert_eq!(d[0].verdict, Verdict::Block);
        assert!(
            d[0].explain("r", "pkg", "1.0.0")
                .contains("rejected by a registry admin: no")
        );
    }

    #[test]
    fn a_release_without_the_provenance_its_major_line_had_is_a_downgrade() {
        let attested = json!({"dist": {"attestations": {"url": "x", "provenance": {}}}});
        let d = run(
            "[provenance]\naction = \"block\"\n",
            "axios",
            &[
                version("0.30.3", json!({})),
                version("1.14.0", attested),
                version("1.14.1", json!({})),
                version("0.30.4", json!({})),
            ],
            &HashMap::new(),
            &[],
        );
        assert_eq!(
            verdicts(&d),
            [Verdict::Allow, Verdict::Allow, Verdict::Block, Verdict::Allow]
        );
    }

    #[test]
    fn freeze_keeps_what_is_held_and_a_manifest_mismatch_is_a_rule() {
        let mut held = version("1.0.0", json!({}));
        held.held = true;
        let mut confused = version("1.0.1", json!({}));
        confused.held = true;
        confused.tarball = Some(TarballFacts {
            gyp: false,
            mismatch: Some("dependencies".into()),
        });
        let d = run(
            "freeze = true\n",
            "pkg",
            &[held, confused, version("1.0.2", json!({}))],
            &HashMap::new(),
            &[],
        );
        assert_eq!(verdicts(&d), [Verdict::Allow, Verdict::Block, Verdict::Block]);
        assert_eq!(d[1].decisive().map(|f| f.rule), Some(Rule::Manifest));
        assert_eq!(d[2].decisive().map(|f| f.rule), Some(Rule::Freeze));
    }
}
