//! The firewall at run time: each registry's policy (cached, dropped when the
//! change log says it changed), what applies to one package (advisories, exceptions,
//! reviews, the decisions stored for it), and the judgement of a package's versions
//! that packument builds and admission share. The rules themselves are
//! `gatehouse_policy`'s; this part loads their inputs and records their outcomes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use gatehouse_npm::name::PackageName;

use crate::admission::PolicyRefusal;
use crate::store_cache::StoreCache;
use gatehouse_policy::advisory::Advisory;
use gatehouse_policy::document::Policy;
use gatehouse_policy::evaluate::{self, Context, Decision, Exception, Review, Subject, TarballFacts, Verdict};
use gatehouse_policy::range::VersionRange;
use gatehouse_store::{DecisionQuery, DecisionRow, Meta, Millis, Registry, RegistryId, StoreError, now_millis};
use serde_json::{Map, Value};

/// A registry's policy and what it was read from.
pub struct RegistryPolicy {
    pub policy: Policy,
    /// `default`, or the time the document was set: part of every decision's basis.
    pub basis: String,
}

/// Everything the rules need about one package in one registry, besides its versions.
#[derive(Clone)]
pub struct PackageRules {
    pub registry: String,
    pub policy: Arc<RegistryPolicy>,
    /// The advisory database's last import, for the decisions' basis.
    pub advisories_basis: String,
    pub advisories: Vec<Advisory>,
    pub exceptions: Vec<Exception>,
    pub reviews: HashMap<String, Review>,
    /// Decisions stored for the package (not `allow`): to record only changes, and for
    /// the tarball facts of versions that were pulled and refused.
    pub stored: HashMap<String, DecisionRow>,
    /// The tarball facts of stored decisions, read once.
    stored_facts: HashMap<String, TarballFacts>,
}

/// One version as the rules see it, kept small (an entry holds one per version).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub version: String,
    /// Only the manifest fields rules read (license, install scripts, attestations).
    pub manifest: Map<String, Value>,
    pub published_at: Option<Millis>,
    pub published_here: bool,
    pub held: bool,
    pub tarball: Option<TarballFacts>,
}

/// Manifest fields the rules read; everything else is left out of [`Candidate`].
const RULE_FIELDS: &[&str] = &["license", "licenses", "hasInstallScript", "gypfile"];
const INSTALL_HOOKS: &[&str] = &["preinstall", "install", "postinstall"];

impl Candidate {
    pub fn new(version: &str, manifest: &Map<String, Value>) -> Candidate {
        let mut kept: Map<String, Value> = RULE_FIELDS
            .iter()
            .filter_map(|f| manifest.get(*f).map(|v| ((*f).to_owned(), v.clone())))
            .collect();
        if let Some(Value::Object(scripts)) = manifest.get("scripts") {
            let hooks: Map<String, Value> = INSTALL_HOOKS
                .iter()
                .filter_map(|h| scripts.get(*h).map(|v| ((*h).to_owned(), v.clone())))
                .collect();
            if !hooks.is_empty() {
                kept.insert("scripts".into(), Value::Object(hooks));
            }
        }
        if let Some(attestations) = manifest.get("dist").and_then(|d| d.get("attestations")) {
            kept.insert("dist".into(), serde_json::json!({ "attestations": attestations }));
        }
        Candidate {
            version: version.to_owned(),
            manifest: kept,
            published_at: None,
            published_here: false,
            held: false,
            tarball: None,
        }
    }
}

impl Candidate {
    /// A held version from the store's lean history: what the rules compare a new
    /// version with (install scripts, attestations), no whole manifest read.
    pub fn from_history(held: &gatehouse_store::VersionHistory) -> Candidate {
        let mut manifest = Map::new();
        if held.install_scripts {
            manifest.insert("hasInstallScript".into(), Value::Bool(true));
        }
        if held.attested {
            manifest.insert("dist".into(), serde_json::json!({ "attestations": {} }));
        }
        Candidate {
            version: held.version.clone(),
            manifest,
            published_at: Some(held.published_at),
            published_here: held.published_here(),
            held: true,
            tarball: None,
        }
    }
}

/// The outcome for a package's versions, as a packument build uses it.
#[derive(Default)]
pub struct Judgement {
    /// Versions not served → the sentence that says why.
    pub withheld: BTreeMap<String, Withheld>,
    /// Versions served with a notice → the notice.
    pub warnings: HashMap<String, String>,
    /// When a decision changes by itself.
    pub until: Option<Millis>,
    /// Decisions that differ from the stored ones, to record.
    pub changed: Vec<DecisionRow>,
}

/// A version the registry does not serve.
#[derive(Debug, Clone)]
pub struct Withheld {
    /// What a request for it is told.
    pub refusal: PolicyRefusal,
    /// The decision, to record when the version is asked for.
    pub row: DecisionRow,
}

impl PackageRules {
    /// The same inputs under another policy (a dry run of one about to be set).
    pub fn with_policy(&self, policy: Arc<Policy>) -> PackageRules {
        PackageRules {
            policy: Arc::new(RegistryPolicy {
                policy: policy.as_ref().clone(),
                basis: "candidate".into(),
            }),
            ..self.clone()
        }
    }

    /// Decides every version of `name`. `versions` includes the ones not held here.
    pub fn judge(&self, name: &PackageName, versions: &[Candidate], now: Millis) -> Judgement {
        let decisions = self.decide(name, versions, now);
        let mut judgement = Judgement::default();
        for (candidate, decision) in versions.iter().zip(decisions) {
            if let Some(until) = decision.until {
                judgement.until = Some(judgement.until.map_or(until, |u| u.min(until)));
            }
            let facts = candidate
                .tarball
                .as_ref()
                .or_else(|| self.stored_facts.get(&candidate.version));
            let row = self.row(name, &candidate.version, &decision, facts, now);
            let recorded = self.stored.get(&candidate.version);
            let interesting = decision.would() != Verdict::Allow;
            // Held versions are recorded whenever their outcome changes; versions only
            // an upstream offers once someone asked for them (see `record_request`).
            if ((candidate.held && interesting) || recorded.is_some())
                && recorded.is_none_or(|r| !same_outcome(r, &row))
            {
                judgement.changed.push(row.clone());
            }
            match decision.verdict {
                Verdict::Allow => {}
                Verdict::Warn => {
                    judgement.warnings.insert(candidate.version.clone(), row.reason.clone());
                }
                Verdict::Quarantine | Verdict::Block => {
                    let refusal = PolicyRefusal::new(&decision, row.reason.clone());
                    judgement
                        .withheld
                        .insert(candidate.version.clone(), Withheld { refusal, row });
                }
            }
        }
        judgement
    }

    /// The decision for one version, judged with the others (for the rules that
    /// compare a version with the ones before it).
    pub fn decide_one(&self, name: &PackageName, versions: &[Candidate], version: &str, now: Millis) -> Decision {
        let decisions = self.decide(name, versions, now);
        versions
            .iter()
            .zip(decisions)
            .find(|(c, _)| c.version == version)
            .map_or_else(Decision::allow, |(_, d)| d)
    }

    fn decide(&self, name: &PackageName, versions: &[Candidate], now: Millis) -> Vec<Decision> {
        let subjects: Vec<Subject<'_>> = versions
            .iter()
            .map(|c| Subject {
                version: &c.version,
                manifest: &c.manifest,
                published_at: c.published_at,
                published_here: c.published_here,
                held: c.held,
                tarball: c.tarball.as_ref().or_else(|| self.stored_facts.get(&c.version)),
            })
            .collect();
        let ctx = Context {
            now,
            advisories: &self.advisories,
            exceptions: &self.exceptions,
            reviews: &self.reviews,
        };
        evaluate::evaluate(&self.policy.policy, name.as_str(), &subjects, &ctx)
    }

    /// The row a decision is stored as; `reason` is the sentence a person reads.
    pub fn row(
        &self,
        name: &PackageName,
        version: &str,
        decision: &Decision,
        facts: Option<&TarballFacts>,
        now: Millis,
    ) -> DecisionRow {
        let decisive = decision.decisive().or_else(|| {
            decision
                .findings
                .iter()
                .filter(|f| f.waived.is_none())
                .max_by_key(|f| f.verdict)
        });
        let reason = if decision.verdict == Verdict::Allow {
            match decisive {
                // Audit mode: what enforcement would say.
                Some(finding) => format!(
                    "{name}@{version}: {} ({}): {}",
                    decision.would().as_str(),
                    finding.rule,
                    finding.reason
                ),
                None => format!("{name}@{version} is allowed"),
            }
        } else {
            decision.explain(&self.registry, name.as_str(), version)
        };
        DecisionRow {
            package: name.to_string(),
            version: version.to_owned(),
            verdict: decision.verdict.as_str().to_owned(),
            would: decision.would().as_str().to_owned(),
            rule: decisive.map(|f| f.rule.as_str().to_owned()),
            reason,
            findings: serde_json::to_string(&decision.findings).unwrap_or_else(|_| "[]".into()),
            basis: self.basis(),
            facts: facts.and_then(|f| serde_json::to_string(f).ok()),
            decided_at: now,
        }
    }

    fn basis(&self) -> String {
        format!("policy={} advisories={}", self.policy.basis, self.advisories_basis)
    }
}

fn same_outcome(a: &DecisionRow, b: &DecisionRow) -> bool {
    (&a.verdict, &a.would, &a.rule, &a.reason, &a.facts) == (&b.verdict, &b.would, &b.rule, &b.reason, &b.facts)
}

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("metadata store")]
    Store(#[from] StoreError),
}

/// The firewall's state in one process.
pub struct Firewall {
    meta: Meta,
    policies: StoreCache<RegistryId, Arc<RegistryPolicy>>,
    /// When the advisory database was last imported into (`none`), read once per change.
    advisories_basis: StoreCache<(), String>,
    /// The advisory database is stale when its last import is older than this.
    stale_after: Millis,
}

/// What `npm audit` answers must say about the data behind it.
pub struct Freshness {
    pub advisories: u64,
    pub last_import: Option<Millis>,
    /// Set when the database is empty or stale: the report cannot be trusted as safe.
    pub notice: Option<String>,
}

impl Firewall {
    pub fn new(meta: Meta, stale_after: Millis) -> Arc<Firewall> {
        Arc::new(Firewall {
            meta,
            policies: StoreCache::new(moka::future::Cache::new(100_000)),
            advisories_basis: StoreCache::new(moka::future::Cache::new(1)),
            stale_after,
        })
    }

    /// The advisory database changed (an import here or, through the change log, elsewhere).
    pub fn forget_advisories_basis(&self) {
        self.advisories_basis.invalidate_all();
    }

    async fn advisories_basis(&self) -> Result<String, FirewallError> {
        if let Some(basis) = self.advisories_basis.get(&()).await {
            return Ok(basis);
        }
        let read = self.advisories_basis.mark();
        let basis = match self.meta.advisory_stats().await?.last_import {
            Some(import) => gatehouse_npm::packument::iso_time(import.imported_at),
            None => "none".to_owned(),
        };
        self.advisories_basis.insert(read, (), basis.clone()).await;
        Ok(basis)
    }

    /// The advisories naming `package`, one per advisory (aliases merged).
    pub async fn advisories(&self, package: &str) -> Result<Vec<Advisory>, FirewallError> {
        let advisories = self
            .meta
            .advisories_for(package)
            .await?
            .iter()
            .filter_map(|record| match serde_json::from_str::<Advisory>(record) {
                Ok(advisory) => Some(advisory),
                Err(e) => {
                    tracing::error!(pkg.name = %package, error = %e, "skipping an unreadable stored advisory");
                    None
                }
            })
            .collect();
        Ok(gatehouse_policy::advisory::dedupe_aliases(advisories))
    }

    pub async fn advisory_freshness(&self) -> Result<Freshness, FirewallError> {
        let stats = self.meta.advisory_stats().await?;
        let last_import = stats.last_import.as_ref().map(|i| i.imported_at);
        let notice = match last_import {
            _ if stats.advisories == 0 => Some(
                "this registry's advisory database is empty, so this audit could not find anything: \
                 an admin imports advisories with `gatehouse advisories import PATH`"
                    .to_owned(),
            ),
            Some(at) if now_millis() - at > self.stale_after => Some(format!(
                "this registry's advisory database was last updated {}; newer advisories are missing from this audit",
                gatehouse_npm::packument::iso_time(at)
            )),
            _ => None,
        };
        Ok(Freshness {
            advisories: stats.advisories,
            last_import,
            notice,
        })
    }

    /// A registry's policy: its own, or the default one.
    pub async fn policy(&self, registry: RegistryId) -> Result<Arc<RegistryPolicy>, FirewallError> {
        if let Some(policy) = self.policies.get(&registry).await {
            return Ok(policy);
        }
        let read = self.policies.mark();
        let policy = Arc::new(match self.meta.policy(registry).await? {
            None => RegistryPolicy {
                policy: Policy::default_policy(),
                basis: "default".into(),
            },
            Some(row) => match Policy::parse(&row.document) {
                Ok(policy) => RegistryPolicy {
                    policy,
                    basis: row.updated_at.to_string(),
                },
                // It was checked when it was set; a document this version cannot read
                // (written by a newer one?) falls back to the default, loudly.
                Err(e) => {
                    tracing::error!(registry.id = registry.0, error = %e, "stored policy is unreadable; using the default policy");
                    RegistryPolicy {
                        policy: Policy::default_policy(),
                        basis: "default".into(),
                    }
                }
            },
        });
        self.policies.insert(read, registry, policy.clone()).await;
        Ok(policy)
    }

    /// A policy changed (here or, through the change log, elsewhere).
    pub fn forget_policies(&self) {
        self.policies.invalidate_all();
    }

    /// What applies to `name` in `registry`, read fresh (a packument build's worth).
    pub async fn rules(&self, registry: &Registry, name: &PackageName) -> Result<Arc<PackageRules>, FirewallError> {
        let policy = self.policy(registry.id).await?;
        let advisories = self.advisories(name.as_str()).await?;
        let exceptions = self
            .meta
            .exceptions(registry.id, Some(name.as_str()))
            .await?
            .into_iter()
            .filter_map(|row| {
                Some(Exception {
                    id: row.id,
                    package: row.package,
                    range: VersionRange::parse(&row.range).ok()?,
                    rule: row.rule.parse().ok()?,
                    expires_at: row.expires_at,
                    reason: row.reason,
                })
            })
            .collect();
        let reviews = self
            .meta
            .reviews(registry.id, name.as_str())
            .await?
            .into_iter()
            .map(|row| {
                let review = if row.approved {
                    Review::Approved { reason: row.reason }
                } else {
                    Review::Rejected { reason: row.reason }
                };
                (row.version, review)
            })
            .collect();
        let stored = self
            .meta
            .decisions(
                registry.id,
                &DecisionQuery {
                    package: Some(name.to_string()),
                    limit: 100_000,
                    ..DecisionQuery::default()
                },
            )
            .await?
            .into_iter()
            .map(|row| (row.version.clone(), row))
            .collect::<HashMap<_, _>>();
        let stored_facts = stored
            .iter()
            .filter_map(|(version, row)| Some((version.clone(), serde_json::from_str(row.facts.as_deref()?).ok()?)))
            .collect();
        Ok(Arc::new(PackageRules {
            registry: registry.name.to_string(),
            policy,
            advisories_basis: self.advisories_basis().await?,
            advisories,
            exceptions,
            reviews,
            stored,
            stored_facts,
        }))
    }

    /// Records decisions off the request's path; a failure is logged, and the next
    /// build tries again (the stored rows still differ).
    pub fn record(&self, registry: &Registry, rows: Vec<DecisionRow>) {
        if rows.is_empty() {
            return;
        }
        crate::metrics::global().decisions(rows.iter().map(|row| row.verdict.as_str()));
        let (meta, registry) = (self.meta.clone(), registry.clone());
        tokio::spawn(async move {
            if let Err(e) = meta.record_decisions(&registry, &rows).await {
                tracing::warn!(registry.name = %registry.name, error = %e, "cannot record policy decisions");
            }
        });
    }

    /// Someone asked for a version the registry withholds: its decision is recorded
    /// (a quarantined version enters the review queue this way).
    pub fn record_request(&self, registry: &Registry, withheld: &Withheld) {
        self.record(
            registry,
            vec![DecisionRow {
                decided_at: now_millis(),
                ..withheld.row.clone()
            }],
        );
    }
}
