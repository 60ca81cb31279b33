//! "What would this policy do to my project?": every version a lockfile pins, judged
//! as the registry would serve it (its upstreams' metadata included), by the
//! registry's policy or by one about to replace it. `gatehouse policy check` and
//! `POST /-/api/v1/registries/{registry}/policy/check` answer with this.

use std::sync::Arc;

use futures_util::StreamExt as _;
use gatehouse_npm::lockfile::{Locked, Lockfile};
use gatehouse_policy::document::Policy;
use gatehouse_policy::evaluate::Verdict;
use gatehouse_store::{Registry, now_millis};
use serde::Serialize;

use crate::packument_cache::{CacheError, PackumentCache};

/// Packuments read at a time.
const JOBS: usize = 16;

/// One pinned version that would not be served as it is (or only with a warning).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub name: String,
    pub version: String,
    /// `block`, `quarantine`, `warn`, or `missing` (the registry has no such version).
    pub decision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub registry: String,
    pub lockfile: &'static str,
    /// Package versions checked.
    pub checked: usize,
    /// Lockfile entries that are no registry packages (links, git, files).
    pub skipped: usize,
    /// What would not be served; `ok` when empty.
    pub held_back: Vec<Finding>,
    pub warnings: Vec<Finding>,
    pub ok: bool,
}

/// Judges every version `lockfile` pins. With `policy`, as that policy would (the
/// registry's own is left as it is).
pub async fn check(
    packuments: &PackumentCache,
    registry: &Registry,
    lockfile: &Lockfile,
    policy: Option<Arc<Policy>>,
) -> Result<CheckReport, CacheError> {
    let now = now_millis();
    // Owned inputs per task: the stream's futures must not borrow across the closure
    // (axum handlers need them `Send` for any lifetime).
    let results: Vec<Result<Option<Finding>, CacheError>> = futures_util::stream::iter(lockfile.packages.clone())
        .map(|pin| {
            let (packuments, registry, policy) = (packuments.clone(), registry.clone(), policy.clone());
            async move { judge(&packuments, &registry, &pin, policy, now).await }
        })
        .buffered(JOBS)
        .collect()
        .await;
    let mut held_back = Vec::new();
    let mut warnings = Vec::new();
    for result in results {
        match result? {
            Some(finding) if finding.decision == "warn" => warnings.push(finding),
            Some(finding) => held_back.push(finding),
            None => {}
        }
    }
    Ok(CheckReport {
        registry: registry.name.to_string(),
        lockfile: lockfile.kind.as_str(),
        checked: lockfile.packages.len(),
        skipped: lockfile.skipped,
        ok: held_back.is_empty(),
        held_back,
        warnings,
    })
}

async fn judge(
    packuments: &PackumentCache,
    registry: &Registry,
    pin: &Locked,
    policy: Option<Arc<Policy>>,
    now: i64,
) -> Result<Option<Finding>, CacheError> {
    let (name, version) = (pin.name.to_string(), pin.version.to_string());
    let missing = |reason: String| {
        Ok(Some(Finding {
            name: name.clone(),
            version: version.clone(),
            decision: "missing".into(),
            rule: None,
            reason,
        }))
    };
    let prepared = match packuments.get(registry, &pin.name).await {
        Ok(prepared) => prepared,
        Err(CacheError::Absent) => return missing(format!("registry {} has no package {name}", registry.name)),
        Err(e @ CacheError::Frozen(_)) => return missing(e.to_string()),
        Err(e) => return Err(e),
    };
    let outcome = &prepared.policy;
    let known = outcome.candidates.iter().any(|c| c.version == version);
    if !known {
        return missing(format!(
            "registry {} serves no version {version} of {name} (an upstream registry may withhold it)",
            registry.name
        ));
    }
    let finding = |verdict: Verdict, rule: Option<String>, reason: String| Finding {
        name: name.clone(),
        version: version.clone(),
        decision: verdict.as_str().to_owned(),
        rule,
        reason,
    };
    Ok(match policy {
        None => match outcome.withheld.get(&version) {
            Some(withheld) => Some(finding(
                withheld.refusal.verdict,
                Some(withheld.refusal.rule.to_string()),
                withheld.refusal.message.clone(),
            )),
            None => outcome
                .warnings
                .get(&version)
                .map(|warning| finding(Verdict::Warn, None, warning.clone())),
        },
        Some(policy) => {
            let rules = outcome.rules.with_policy(policy);
            let decision = rules.decide_one(&pin.name, &outcome.candidates, &version, now);
            match decision.verdict {
                Verdict::Allow => None,
                verdict => {
                    let row = rules.row(&pin.name, &version, &decision, None, now);
                    Some(finding(verdict, row.rule, row.reason))
                }
            }
        }
    })
}
