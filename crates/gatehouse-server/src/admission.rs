//! The one way a version enters a registry: publishes, pulls from an upstream and
//! promotions all call [`Admission::admit`], so every check here (tarball inspection,
//! manifest consistency, and the firewall's policy next) guards all of them.
//!
//! Order matters for crash safety: a blob is durable by the time the metadata commit
//! that refers to it is. Either its file is written (and fsynced) first, or, for a
//! small tarball, its bytes are journaled in that very commit and its file written
//! after it (see `gatehouse_store::blobs::journal`). A crash leaves at worst an
//! unreferenced blob.

use bytes::Bytes;
use gatehouse_npm::dist_tag::DistTag;
use gatehouse_npm::integrity::Digests;
use gatehouse_npm::name::PackageName;
use gatehouse_npm::provenance::{self, ProvenanceError, TrustedRoot};
use gatehouse_npm::tarball::{self, TarballError, TarballInfo, TarballLimits};
use gatehouse_npm::trust::PublishedBy;
use gatehouse_npm::version::Version;
use gatehouse_store::blobs::{BlobError, BlobKey, Blobs, StagedBlob};
use gatehouse_store::{
    AuditAction, AuditEntry, BlobRef, Conflict, DecisionRow, Meta, NewVersion, PublishTarget, Registry, StoreError,
    User,
};
use serde_json::{Map, Value};

use crate::firewall::{self, Firewall, FirewallError, PackageRules};
use crate::packument_cache::{PackumentCache, PolicyOutcome};
use gatehouse_policy::document::Rule;
use gatehouse_policy::evaluate::{Decision, TarballFacts, Verdict};
use std::sync::Arc;

/// A version asking to enter a registry.
pub struct Candidate<'a> {
    pub registry: &'a Registry,
    /// The package as the caller read it, when it exists and was read (publishes).
    pub target: Option<&'a PublishTarget>,
    pub name: PackageName,
    pub version: Version,
    pub manifest: Map<String, Value>,
    pub tarball: Bytes,
    /// The tarball already written to storage as it streamed in (pulls); `None`
    /// stores `tarball` itself.
    pub staged: Option<Box<dyn StagedBlob>>,
    pub digests: Digests,
    pub tags: Vec<DistTag>,
    pub publisher: Option<&'a User>,
    pub origin: Origin,
    pub client_addr: Option<String>,
    /// What the policy decided for the package's other versions, when the caller has
    /// it at hand (pulls do); otherwise admission reads what it needs.
    pub policy: Option<Arc<PolicyOutcome>>,
    pub provenance: Option<Attestations>,
}

/// Provenance that comes with a version.
#[derive(Debug, Clone)]
pub enum Attestations {
    /// The Sigstore bundle a publish attached (`npm publish --provenance`): verified
    /// before the version enters.
    Bundle(Bytes),
    /// What another registry of this server verified and stored (a promotion): kept.
    Verified(String),
}

/// How the version arrived.
#[derive(Debug, Clone)]
pub enum Origin {
    Publish,
    /// Published by a CI job through trusted publishing (an exchanged OIDC token):
    /// a publish, whose `_npmUser` says which run published it.
    TrustedPublish(PublishedBy),
    /// Pulled from an upstream on first download; its manifest passes through
    /// unchanged and it keeps the upstream's publish time.
    Upstream {
        label: String,
        published_at: Option<i64>,
    },
    /// Pushed from another registry of this server: same bytes, same manifest.
    Promotion {
        from: String,
    },
    /// Moved in from another registry's storage (`gatehouse import`): checked like a
    /// publish, keeping its publish time and the `_npmUser` it recorded.
    Import {
        from: &'static str,
        published_at: Option<i64>,
    },
}

impl Origin {
    /// The way in, as metrics label it.
    fn kind(&self) -> &'static str {
        match self {
            Origin::Publish | Origin::TrustedPublish(_) => "publish",
            Origin::Upstream { .. } => "pull",
            Origin::Promotion { .. } => "promotion",
            Origin::Import { .. } => "import",
        }
    }

    fn describe(&self) -> String {
        match self {
            Origin::Publish | Origin::TrustedPublish(_) => "publish".into(),
            Origin::Upstream { label, .. } => format!("upstream:{label}"),
            Origin::Promotion { from } => format!("promotion:{from}"),
            Origin::Import { from, .. } => format!("import:{from}"),
        }
    }

    fn audit_action(&self) -> AuditAction {
        match self {
            Origin::Publish | Origin::TrustedPublish(_) => AuditAction::VersionPublish,
            Origin::Upstream { .. } => AuditAction::VersionPull,
            Origin::Promotion { .. } => AuditAction::VersionPromote,
            Origin::Import { .. } => AuditAction::VersionImport,
        }
    }

    /// Published into this registry by a client (not pulled, promoted or imported).
    fn is_published_here(&self) -> bool {
        matches!(self, Origin::Publish | Origin::TrustedPublish(_))
    }

    /// Published here or moved in from where it was published: the manifest must agree
    /// with the tarball, and the version counts as this registry's own.
    fn is_checked_like_a_publish(&self) -> bool {
        matches!(
            self,
            Origin::Publish | Origin::TrustedPublish(_) | Origin::Import { .. }
        )
    }

    /// When it was first published, when that is known to be other than now.
    fn published_at(&self) -> Option<i64> {
        match self {
            Origin::Upstream { published_at, .. } | Origin::Import { published_at, .. } => *published_at,
            Origin::Publish | Origin::TrustedPublish(_) | Origin::Promotion { .. } => None,
        }
    }
}

/// Why a version may not enter: what the person publishing (or the upstream) must fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Tarball(#[from] TarballError),
    #[error(transparent)]
    Manifest(#[from] ManifestMismatch),
}

/// The manifest says something the tarball's `package.json` does not (manifest confusion).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ManifestMismatch {
    #[error("the tarball's package.json names {packed:?}, but the publish is for \"{name}\"")]
    Name { packed: String, name: PackageName },
    #[error("the tarball's package.json has version \"{packed}\", but the publish is for {version}")]
    Version { packed: String, version: Version },
    #[error("manifest {field} differ from the tarball's package.json; publish the package.json you packed")]
    Dependencies { field: &'static str },
    #[error("manifest scripts.{script} differs from the tarball's package.json")]
    Script { script: &'static str },
}

/// The registry's policy does not let a version in (or serve it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PolicyRefusal {
    pub verdict: Verdict,
    pub rule: Rule,
    /// Which rule, why, and what to do.
    pub message: String,
}

impl ManifestMismatch {
    /// The manifest field that differs.
    pub fn field(&self) -> &'static str {
        match self {
            ManifestMismatch::Name { .. } => "name",
            ManifestMismatch::Version { .. } => "version",
            ManifestMismatch::Dependencies { field } => field,
            ManifestMismatch::Script { .. } => "scripts",
        }
    }
}

impl PolicyRefusal {
    /// What `decision` (not `allow`) refuses, in `message`'s words.
    pub fn new(decision: &Decision, message: String) -> PolicyRefusal {
        PolicyRefusal {
            verdict: decision.verdict,
            rule: decision.decisive().map_or(Rule::Review, |f| f.rule),
            message,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Policy(#[from] PolicyRefusal),
    #[error("You cannot publish over the previously published versions: {0}.")]
    VersionExists(Version),
    #[error("package name \"{0}\" differs only in case from an existing package; names are unique ignoring case")]
    NameTaken(PackageName),
    #[error("metadata store")]
    Store(#[from] StoreError),
    #[error("blob store")]
    Blob(#[from] BlobError),
    #[error("provenance refused: {0}")]
    Provenance(#[from] ProvenanceError),
}

impl From<FirewallError> for AdmissionError {
    fn from(e: FirewallError) -> Self {
        match e {
            FirewallError::Store(e) => AdmissionError::Store(e),
        }
    }
}

#[derive(Debug)]
pub struct Admitted {
    pub created_package: bool,
    /// The policy let it in with a warning, or holds it for review: what to tell the publisher.
    pub notice: Option<String>,
}

/// Admits versions into registries. Holds exactly what admission touches.
pub struct Admission {
    meta: Meta,
    blobs: Blobs,
    packuments: PackumentCache,
    firewall: Arc<Firewall>,
    limits: TarballLimits,
    /// Flag a name internal when it is first published here.
    internal_by_default: bool,
    /// What publishes' provenance bundles are verified against.
    provenance_root: Arc<TrustedRoot>,
}

impl Admission {
    pub fn new(
        meta: Meta,
        blobs: Blobs,
        packuments: PackumentCache,
        firewall: Arc<Firewall>,
        limits: TarballLimits,
        internal_by_default: bool,
        provenance_root: Arc<TrustedRoot>,
    ) -> Self {
        Admission {
            meta,
            blobs,
            packuments,
            firewall,
            limits,
            internal_by_default,
            provenance_root,
        }
    }

    pub async fn admit(&self, candidate: Candidate<'_>) -> Result<Admitted, AdmissionError> {
        let origin = candidate.origin.kind();
        let bytes = candidate.tarball.len() as u64;
        let admitted = self.admit_counted(candidate).await;
        crate::metrics::global().admission(origin, admitted.is_ok().then_some(bytes));
        admitted
    }

    async fn admit_counted(&self, candidate: Candidate<'_>) -> Result<Admitted, AdmissionError> {
        let Candidate {
            registry,
            target,
            name,
            version,
            manifest,
            tarball,
            staged,
            digests,
            tags,
            publisher,
            origin,
            client_addr,
            policy,
            provenance,
        } = candidate;

        // Cheap early refusal, before any bytes are written; the store's unique
        // constraint still decides races between concurrent publishes.
        let taken = match target {
            Some(target) => target.release_taken,
            None => {
                self.meta
                    .release_taken(registry.id, &name, version.release_key())
                    .await?
            }
        };
        if taken {
            return Err(AdmissionError::VersionExists(version));
        }

        let inspected = inspect(&tarball, self.limits).await.map_err(Refusal::from)?;
        // Manifest confusion is refused at publish. A pulled or promoted version's
        // mismatch is a fact for the policy's `manifest` rule; a tarball of another
        // package or version is refused everywhere.
        let mismatch = match check_manifest_matches_tarball(&name, &version, &manifest, &inspected) {
            Ok(()) => None,
            Err(mismatch @ (ManifestMismatch::Dependencies { .. } | ManifestMismatch::Script { .. }))
                if !origin.is_checked_like_a_publish() =>
            {
                Some(mismatch.field().to_owned())
            }
            Err(mismatch) => return Err(Refusal::from(mismatch).into()),
        };
        let facts = TarballFacts {
            gyp: inspected.has_binding_gyp,
            mismatch,
        };
        // What `dist.attestations` says of a publish, and what the attestations
        // endpoint will serve.
        let (summary, attestations) = match provenance {
            Some(Attestations::Bundle(bundle)) if origin.is_published_here() => {
                let attested = self
                    .attest(bundle, &name, &version, &manifest, &digests, &origin)
                    .await?;
                (Some(attested.summary), Some(attested.bundles))
            }
            // Only a publish brings a bundle; what rides along on a pull or an import
            // is not the publisher's and is dropped.
            Some(Attestations::Bundle(_)) | None => (None, None),
            // A promotion's manifest already says what they are.
            Some(Attestations::Verified(stored)) => (None, Some(stored)),
        };
        let mut manifest = manifest;
        if origin.is_published_here() {
            // What the rules and clients read is what was verified, not what the client
            // claims; the packument adds the URL they are served at (per registry).
            let dist = manifest.entry("dist").or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(dist) = dist {
                dist.remove("attestations");
                if let Some(summary) = summary {
                    dist.insert("attestations".into(), summary);
                }
            }
        }
        let screened = self
            .screen(
                registry,
                &name,
                &version,
                &manifest,
                &origin,
                &facts,
                policy,
                target.is_some(),
            )
            .await?;
        // A blocked version never enters. A quarantined one is held if it was published
        // or promoted here (it waits for review), refused if it was pulled (asked for
        // again once approved).
        let pulled_and_held = !screened.decision.verdict.served() && matches!(origin, Origin::Upstream { .. });
        if screened.decision.verdict == Verdict::Block || pulled_and_held {
            let row = screened.row(&name, &version, &facts);
            self.record(registry, &name, &row).await;
            // Dropped, so the next build withholds it with what its tarball showed.
            self.packuments.invalidate(registry.id, &name).await;
            return Err(PolicyRefusal::new(&screened.decision, row.reason).into());
        }
        let manifest = match origin {
            Origin::Publish => served_manifest(manifest, &name, &version, &inspected, &digests, publisher),
            Origin::TrustedPublish(ref by) => {
                let mut served = served_manifest(manifest, &name, &version, &inspected, &digests, None);
                served.insert("_npmUser".into(), by.npm_user());
                served
            }
            Origin::Import { .. } => {
                // Who published it there, not who runs the import.
                let npm_user = manifest.get("_npmUser").cloned();
                let mut served = served_manifest(manifest, &name, &version, &inspected, &digests, None);
                if let Some(npm_user) = npm_user {
                    served.insert("_npmUser".into(), npm_user);
                }
                served
            }
            Origin::Upstream { .. } | Origin::Promotion { .. } => manifest,
        };
        let pulled = matches!(origin, Origin::Upstream { .. });
        let deprecated = manifest.get("deprecated").and_then(Value::as_str).map(str::to_owned);

        let key = BlobKey::from_bytes(digests.sha512);
        // Small tarballs ride in the metadata commit instead of waiting for the disk; the
        // journal's task writes their files after it.
        let journal = match staged {
            Some(staged) => {
                staged.commit(&key).await?;
                None
            }
            None if self.blobs.journals(tarball.len()) => Some(tarball.clone()),
            None => {
                self.blobs.put(&key, tarball.clone()).await?;
                None
            }
        };
        let journaled = journal.is_some();
        // Stored with the version: what the next one is compared with.
        let install_scripts = gatehouse_policy::evaluate::runs_install_scripts(&manifest, Some(&facts));
        let attested = gatehouse_policy::evaluate::has_attestations(&manifest);

        let new = NewVersion {
            registry_id: registry.id,
            name: name.clone(),
            version: version.as_str().to_owned(),
            release_key: version.release_key().to_owned(),
            manifest: Value::Object(manifest).to_string(),
            blob: BlobRef {
                sha512_hex: key.to_hex(),
                size: tarball.len() as u64,
            },
            publisher: publisher.map(|u| u.id),
            publisher_name: publisher.map(|u| u.name.clone()),
            deprecated,
            source: origin.describe(),
            facts: serde_json::to_string(&facts).ok(),
            install_scripts,
            attested,
            attestations,
            tags: tags.iter().map(|t| t.as_str().to_owned()).collect(),
            // Names first published here are internal (dependency-confusion guard);
            // names that arrive from an upstream are not.
            internal_if_new: !pulled && self.internal_by_default,
            published_at: origin.published_at(),
            // An import sets its tags once all of a package's versions are in.
            claim_latest: !pulled && !matches!(origin, Origin::Import { .. }),
            audit: AuditEntry {
                actor: publisher.map(|u| u.name.clone()),
                action: origin.audit_action(),
                registry: Some(registry.name.to_string()),
                package: Some(name.to_string()),
                version: Some(version.to_string()),
                detail: Some(format!("source={} sha512={}", origin.describe(), key.to_hex())),
                client_addr,
            },
            known_package: target.map(|t| t.package),
            journal,
        };
        let inserted = match self.meta.insert_version(&new).await {
            Ok(inserted) => inserted,
            Err(StoreError::Conflict(Conflict::VersionExists)) => return Err(AdmissionError::VersionExists(version)),
            Err(StoreError::Conflict(Conflict::NameTakenIgnoringCase)) => return Err(AdmissionError::NameTaken(name)),
            Err(e) => return Err(e.into()),
        };
        if journaled {
            self.blobs.committed();
        }
        if pulled {
            if let Err(e) = self.packuments.record_pull(registry.id, &name).await {
                tracing::warn!(error = %e, pkg.name = %name, "cannot update the prepared packument after a pull; dropping it");
                self.packuments.invalidate(registry.id, &name).await;
            }
        } else {
            self.packuments.invalidate(registry.id, &name).await;
        }
        tracing::info!(registry.name = %registry.name, pkg.name = %name, pkg.version = %version, "version admitted");
        // Quarantined (it waits for review) or warned: recorded, and said to the publisher.
        let notice = match screened.decision.would() {
            Verdict::Allow => None,
            _ => {
                let row = screened.row(&name, &version, &facts);
                self.record(registry, &name, &row).await;
                Some(row.reason)
            }
        };
        Ok(Admitted {
            created_package: inserted.created_package,
            notice,
        })
    }

    /// What the policy says of a version about to enter, judged with the package's
    /// other versions (two rules compare a version with the ones before it).
    #[allow(clippy::too_many_arguments)]
    async fn screen(
        &self,
        registry: &Registry,
        name: &PackageName,
        version: &Version,
        manifest: &Map<String, Value>,
        origin: &Origin,
        facts: &TarballFacts,
        known: Option<Arc<PolicyOutcome>>,
        exists: bool,
    ) -> Result<Screened, AdmissionError> {
        let (rules, mut candidates) = match known {
            Some(outcome) => (outcome.rules.clone(), outcome.candidates.clone()),
            None => {
                let rules = self.firewall.rules(registry, name).await?;
                let mut candidates = Vec::new();
                if rules.policy.policy.compares_with_history()
                    && (exists || !matches!(origin, Origin::Publish | Origin::TrustedPublish(_)))
                {
                    for held in self.meta.version_history(registry.id, name).await? {
                        candidates.push(firewall::Candidate::from_history(&held));
                    }
                }
                (rules, candidates)
            }
        };
        let now = gatehouse_store::now_millis();
        let mut entering = firewall::Candidate::new(version.as_str(), manifest);
        entering.published_here = origin.is_checked_like_a_publish();
        entering.published_at = Some(origin.published_at().unwrap_or(now));
        entering.tarball = Some(facts.clone());
        candidates.retain(|c| c.version != version.as_str());
        candidates.push(entering);
        let decision = rules.decide_one(name, &candidates, version.as_str(), now);
        Ok(Screened { rules, decision, now })
    }

    /// Verifies a publish's provenance bundle: the tarball it names, the certificate
    /// chain and log entry, and that it was built where the publisher says.
    async fn attest(
        &self,
        bundle: Bytes,
        name: &PackageName,
        version: &Version,
        manifest: &Map<String, Value>,
        digests: &Digests,
        origin: &Origin,
    ) -> Result<Attested, AdmissionError> {
        let root = self.provenance_root.clone();
        let (checked_name, checked_version, sha512) = (name.clone(), version.clone(), digests.sha512_hex());
        // Certificate chains and signatures: a few hundred microseconds, off the runtime.
        let verified = tokio::task::spawn_blocking(move || {
            provenance::verify(&bundle, &root, &checked_name, &checked_version, &sha512).map(|p| (p, bundle))
        })
        .await
        .map_err(|e| ProvenanceError::Json(format!("verification failed: {e}")))?;
        let (provenance, bundle) = verified?;
        match origin {
            // The OIDC token vouched for the job; the certificate must be that job's.
            Origin::TrustedPublish(by) => {
                provenance.check_publisher(by)?;
                provenance.check_repository(manifest, false)?;
            }
            // Only package.json ties a token's publish to the repository it names.
            _ => provenance.check_repository(manifest, true)?,
        }
        Ok(Attested::new(&provenance.predicate_type, &bundle))
    }

    async fn record(&self, registry: &Registry, name: &PackageName, row: &DecisionRow) {
        crate::metrics::global().decisions([row.verdict.as_str()]);
        if let Err(e) = self.meta.record_decisions(registry, std::slice::from_ref(row)).await {
            tracing::warn!(registry.name = %registry.name, pkg.name = %name, error = %e, "cannot record a policy decision");
        }
    }
}

/// Verified provenance: what the packument says of it, and what the attestations
/// endpoint serves.
struct Attested {
    /// `dist.attestations` without its URL: `{"provenance": {"predicateType": …}}`.
    summary: Value,
    /// `[{"predicateType", "bundle"}]`, as the public registry's endpoint lists them.
    bundles: String,
}

impl Attested {
    fn new(predicate_type: &str, bundle: &[u8]) -> Attested {
        // Verified JSON, so it parses; stored parsed-and-reserialised either way.
        let bundle: Value = serde_json::from_slice(bundle).unwrap_or(Value::Null);
        Attested {
            summary: serde_json::json!({ "provenance": { "predicateType": predicate_type } }),
            bundles: serde_json::json!([{ "predicateType": predicate_type, "bundle": bundle }]).to_string(),
        }
    }
}

/// A version's decision and what it was made with.
struct Screened {
    rules: Arc<PackageRules>,
    decision: Decision,
    now: i64,
}

impl Screened {
    /// The decision as it is stored and told (with what the tarball showed).
    fn row(&self, name: &PackageName, version: &Version, facts: &TarballFacts) -> DecisionRow {
        self.rules
            .row(name, version.as_str(), &self.decision, Some(facts), self.now)
    }
}

/// What a tarball may unpack to when it is inspected in place, on the request's task.
const IN_PLACE_LIMITS: TarballLimits = TarballLimits {
    max_unpacked_bytes: 1024 * 1024,
    max_entries: 2_000,
    max_package_json_bytes: 1024 * 1024,
};

/// Inspects a tarball. Most are small, and a trip to the blocking pool and back costs
/// more than inspecting them; but inflating is bounded by the limits, not by the
/// input's size (a 32 KiB gzip bomb is tens of MB of work). So a small tarball is
/// first inspected in place within tight limits (a millisecond at most), and only one
/// that outgrows them is inspected again, with the real limits, on the blocking pool.
async fn inspect(bytes: &Bytes, limits: TarballLimits) -> Result<TarballInfo, TarballError> {
    let tight = TarballLimits {
        max_unpacked_bytes: limits.max_unpacked_bytes.min(IN_PLACE_LIMITS.max_unpacked_bytes),
        max_entries: limits.max_entries.min(IN_PLACE_LIMITS.max_entries),
        max_package_json_bytes: limits
            .max_package_json_bytes
            .min(IN_PLACE_LIMITS.max_package_json_bytes),
    };
    if bytes.len() <= crate::offload::IN_PLACE_BYTES {
        match tarball::inspect(bytes, &tight) {
            Err(TarballError::TooLarge { .. } | TarballError::TooManyEntries { .. }) if tight != limits => {}
            done => return done,
        }
    }
    let bytes = bytes.clone();
    tokio::task::spawn_blocking(move || tarball::inspect(&bytes, &limits))
        .await
        .map_err(|e| TarballError::Corrupt(format!("inspection failed: {e}")))?
}

/// Manifest-confusion guard: what `npm view` shows must be what installs. The
/// fields npm acts on at install time must agree with the tarball's package.json.
fn check_manifest_matches_tarball(
    name: &PackageName,
    version: &Version,
    manifest: &Map<String, Value>,
    tarball: &TarballInfo,
) -> Result<(), ManifestMismatch> {
    let packed = &tarball.manifest;
    if packed.get("name").and_then(Value::as_str) != Some(name.as_str()) {
        return Err(ManifestMismatch::Name {
            packed: packed
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("nothing")
                .to_owned(),
            name: name.clone(),
        });
    }
    let packed_version = packed.get("version").and_then(Value::as_str).unwrap_or("nothing");
    if Version::parse(packed_version)
        .map(|v| v.as_str() != version.as_str())
        .unwrap_or(true)
    {
        return Err(ManifestMismatch::Version {
            packed: packed_version.to_owned(),
            version: version.clone(),
        });
    }
    for field in ["dependencies", "optionalDependencies", "peerDependencies"] {
        if non_empty_object(manifest.get(field)) != non_empty_object(packed.get(field)) {
            return Err(ManifestMismatch::Dependencies { field });
        }
    }
    for script in ["preinstall", "install", "postinstall"] {
        let declared = manifest.get("scripts").and_then(|s| s.get(script));
        let packed_script = packed.get("scripts").and_then(|s| s.get(script));
        // npm adds `install: node-gyp rebuild` to the manifest when binding.gyp exists.
        let implied = script == "install" && tarball.has_binding_gyp && packed_script.is_none();
        if declared != packed_script && !implied {
            return Err(ManifestMismatch::Script { script });
        }
    }
    Ok(())
}

fn non_empty_object(value: Option<&Value>) -> Option<&Map<String, Value>> {
    value.and_then(Value::as_object).filter(|m| !m.is_empty())
}

/// The manifest as we store and serve it: client-controlled bookkeeping fields are
/// dropped, registry-computed ones (publisher, sizes, install-script flag) are set.
fn served_manifest(
    mut manifest: Map<String, Value>,
    name: &PackageName,
    version: &Version,
    tarball: &TarballInfo,
    digests: &Digests,
    publisher: Option<&User>,
) -> Map<String, Value> {
    const KEEP_UNDERSCORED: &[&str] = &["_nodeVersion", "_npmVersion", "_hasShrinkwrap"];
    manifest.retain(|k, _| !k.starts_with('_') || KEEP_UNDERSCORED.contains(&k.as_str()));
    // bun sends non-standard copies of the digests at the top level.
    for stray in ["integrity", "shasum"] {
        manifest.remove(stray);
    }
    manifest.insert("_id".into(), Value::String(format!("{name}@{version}")));
    if let Some(user) = publisher {
        manifest.insert(
            "_npmUser".into(),
            serde_json::json!({ "name": user.name, "email": user.email.clone().unwrap_or_default() }),
        );
    }
    let has_install_script = manifest.get("scripts").and_then(Value::as_object).is_some_and(|s| {
        ["preinstall", "install", "postinstall"]
            .iter()
            .any(|k| s.contains_key(*k))
    }) || tarball.has_binding_gyp;
    if has_install_script {
        manifest.insert("hasInstallScript".into(), Value::Bool(true));
    } else {
        manifest.remove("hasInstallScript");
    }
    manifest.insert("_hasShrinkwrap".into(), Value::Bool(tarball.has_shrinkwrap));
    // npm ≥ 7 publishes without the README; the package page shows the tarball's.
    let sent_readme = manifest
        .get("readme")
        .and_then(Value::as_str)
        .is_some_and(|r| !r.trim().is_empty());
    if !sent_readme && let Some(readme) = &tarball.readme {
        manifest.insert("readme".into(), Value::String(readme.text.clone()));
        manifest.insert("readmeFilename".into(), Value::String(readme.file.clone()));
    }
    let mut dist = match manifest.remove("dist") {
        Some(Value::Object(d)) => d,
        _ => Map::new(),
    };
    dist.remove("tarball");
    dist.insert("integrity".into(), Value::String(digests.sri_sha512()));
    dist.insert("shasum".into(), Value::String(digests.shasum_hex()));
    dist.insert("fileCount".into(), Value::from(tarball.file_count));
    dist.insert("unpackedSize".into(), Value::from(tarball.unpacked_size));
    manifest.insert("dist".into(), Value::Object(dist));
    manifest
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gatehouse_npm::integrity::Digests;
    use gatehouse_store::AuditQuery;
    use gatehouse_store::blobs::memory::MemoryBlobStore;
    use gatehouse_store::registry::RegistryName;
    use gatehouse_store::sqlite::SqliteStore;
    use serde_json::json;

    use super::*;
    use crate::config::{PublicUrl, UpstreamSettings};
    use crate::upstream::Upstreams;

    /// Admission over an in-memory database and blob store, and a registry in it.
    struct Fixture {
        admission: Admission,
        meta: Meta,
        blobs: Blobs,
        registry: Registry,
    }

    async fn fixture() -> Fixture {
        let meta: Meta = Arc::new(SqliteStore::open_in_memory().await.expect("in-memory store"));
        let blobs = Blobs::idle(Arc::new(MemoryBlobStore::default()), meta.clone());
        let settings = UpstreamSettings::default();
        let upstreams = Arc::new(Upstreams::new(meta.clone(), &settings, 1 << 20).expect("upstreams"));
        let public_url = PublicUrl::parse("http://registry.test").expect("url");
        let firewall = Firewall::new(meta.clone(), 7 * 86_400_000);
        let packuments = PackumentCache::new(
            meta.clone(),
            upstreams,
            public_url,
            settings,
            firewall.clone(),
            1 << 20,
            false,
        );
        let admission = Admission::new(
            meta.clone(),
            blobs.clone(),
            packuments,
            firewall,
            TarballLimits::default(),
            true,
            Arc::new(TrustedRoot::public_good()),
        );
        let name = RegistryName::parse("test").expect("name");
        let registry = meta.create_registry(&name, false).await.expect("registry");
        Fixture {
            admission,
            meta,
            blobs,
            registry,
        }
    }

    fn tarball(package_json: &serde_json::Value) -> Bytes {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (path, data) in [
            ("package/package.json", package_json.to_string().into_bytes()),
            ("package/index.js", b"module.exports = 1;\n".to_vec()),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, data.as_slice()).expect("append");
        }
        Bytes::from(builder.into_inner().expect("tar").finish().expect("gzip"))
    }

    impl Fixture {
        /// Publishes `name@version` with `manifest` as the publish body's and `packed` as
        /// the tarball's package.json.
        async fn publish(
            &self,
            name: &str,
            version: &str,
            manifest: serde_json::Value,
            packed: serde_json::Value,
        ) -> Result<Admitted, AdmissionError> {
            let tarball = tarball(&packed);
            let serde_json::Value::Object(manifest) = manifest else {
                panic!("a manifest is an object")
            };
            self.admission
                .admit(Candidate {
                    registry: &self.registry,
                    target: None,
                    name: PackageName::parse(name).expect("name"),
                    version: Version::parse(version).expect("version"),
                    manifest,
                    digests: Digests::of(&tarball),
                    tarball,
                    staged: None,
                    tags: vec![DistTag::parse("latest").expect("tag")],
                    publisher: None,
                    origin: Origin::Publish,
                    client_addr: None,
                    policy: None,
                    provenance: None,
                })
                .await
        }

        async fn versions(&self, name: &str) -> Vec<String> {
            let name = PackageName::parse(name).expect("name");
            let record = self.meta.package(self.registry.id, &name).await.expect("read");
            record
                .map(|r| r.versions.into_iter().map(|v| v.version).collect())
                .unwrap_or_default()
        }

        async fn blob_count(&self) -> usize {
            self.blobs.count().await.expect("count")
        }
    }

    fn manifest(name: &str, version: &str) -> serde_json::Value {
        json!({ "name": name, "version": version, "dependencies": { "dep": "^1.0.0" } })
    }

    #[tokio::test]
    async fn an_admitted_version_is_stored_with_its_blob_and_audit_entry() {
        let f = fixture().await;
        let admitted = f
            .publish("lib", "1.0.0", manifest("lib", "1.0.0"), manifest("lib", "1.0.0"))
            .await
            .expect("admitted");
        assert!(admitted.created_package);
        assert_eq!(f.versions("lib").await, ["1.0.0"]);
        assert_eq!(f.blob_count().await, 1);
        let audit = f.meta.audit_entries(&AuditQuery::recent(10)).await.expect("audit");
        assert_eq!(audit[0].1.action, "version.publish");
        assert_eq!(audit[0].1.version.as_deref(), Some("1.0.0"));
    }

    #[tokio::test]
    async fn a_republished_version_is_refused_and_nothing_is_stored() {
        let f = fixture().await;
        f.publish("lib", "1.0.0", manifest("lib", "1.0.0"), manifest("lib", "1.0.0"))
            .await
            .expect("first");
        // Other bytes under the same version: refused before they are written.
        let mut packed = manifest("lib", "1.0.0");
        packed["description"] = json!("different bytes");
        let refused = f.publish("lib", "1.0.0", manifest("lib", "1.0.0"), packed).await;
        assert!(
            matches!(&refused, Err(AdmissionError::VersionExists(v)) if v.as_str() == "1.0.0"),
            "{refused:?}"
        );
        assert_eq!(f.blob_count().await, 1);
        assert_eq!(f.versions("lib").await, ["1.0.0"]);
    }

    #[tokio::test]
    async fn a_manifest_that_differs_from_the_tarball_is_refused_with_the_field() {
        let f = fixture().await;
        let mut packed = manifest("lib", "1.0.0");
        packed["dependencies"] = json!({ "evil": "*" });
        let refused = f.publish("lib", "1.0.0", manifest("lib", "1.0.0"), packed).await;
        assert!(
            matches!(
                &refused,
                Err(AdmissionError::Refused(Refusal::Manifest(
                    ManifestMismatch::Dependencies { field: "dependencies" }
                )))
            ),
            "{refused:?}"
        );
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("publish the package.json you packed"), "{message}");
        assert!(f.versions("lib").await.is_empty());
        assert_eq!(f.blob_count().await, 0);
    }

    #[tokio::test]
    async fn a_tarball_that_is_not_gzip_is_refused_with_the_tarball_error() {
        let f = fixture().await;
        let bytes = Bytes::from_static(b"not a tarball at all");
        let serde_json::Value::Object(manifest) = manifest("lib", "1.0.0") else {
            unreachable!()
        };
        let refused = f
            .admission
            .admit(Candidate {
                registry: &f.registry,
                target: None,
                name: PackageName::parse("lib").expect("name"),
                version: Version::parse("1.0.0").expect("version"),
                manifest,
                digests: Digests::of(&bytes),
                tarball: bytes,
                staged: None,
                tags: Vec::new(),
                publisher: None,
                origin: Origin::Publish,
                client_addr: None,
                policy: None,
                provenance: None,
            })
            .await;
        assert!(
            matches!(
                &refused,
                Err(AdmissionError::Refused(Refusal::Tarball(TarballError::NotGzip)))
            ),
            "{refused:?}"
        );
        assert_eq!(f.blob_count().await, 0);
    }

    #[tokio::test]
    async fn a_name_that_differs_only_in_case_is_taken() {
        let f = fixture().await;
        f.publish("lib", "1.0.0", manifest("lib", "1.0.0"), manifest("lib", "1.0.0"))
            .await
            .expect("first");
        let refused = f
            .publish("Lib", "1.0.0", manifest("Lib", "1.0.0"), manifest("Lib", "1.0.0"))
            .await;
        assert!(
            matches!(&refused, Err(AdmissionError::NameTaken(n)) if n.as_str() == "Lib"),
            "{refused:?}"
        );
        assert!(f.versions("Lib").await.is_empty());
    }
}
