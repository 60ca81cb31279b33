//! Moving in from another registry: `gatehouse import verdaccio`. Every version goes
//! through [`Admission`], so the firewall judges what comes in as it judges a publish,
//! and a re-run skips what is already here.

pub mod verdaccio;

use std::collections::BTreeMap;
use std::path::Path;

use futures_util::StreamExt as _;
use gatehouse_npm::dist_tag::DistTag;
use gatehouse_npm::integrity::{self, Digests};
use gatehouse_npm::name::PackageName;
use gatehouse_npm::version::Version;
use gatehouse_store::registry::RegistryName;
use gatehouse_store::{Meta, PackageRecord, Registry, User};
use serde_json::Value;

use crate::admission::{Admission, AdmissionError, Candidate, Origin};
use crate::auth::password::HashKind;
use crate::services::{Actor, ServiceError, Services};
use verdaccio::{Document, PackageDir, Storage, StoredVersion, VerdaccioError};

/// Packages imported at a time.
const PARALLEL_PACKAGES: usize = 4;

/// What to import, and how.
pub struct VerdaccioImport<'a> {
    pub storage: &'a Path,
    /// Verdaccio's htpasswd file, whose users are created here.
    pub htpasswd: Option<&'a Path>,
    /// The user who maintains the packages that record no maintainer (may be one of
    /// the htpasswd file's).
    pub owner: Option<&'a str>,
    /// Also import Verdaccio's cached copies of upstream packages, as pulled versions.
    pub include_cache: bool,
}

/// Everything the import did, and what it could not do.
#[derive(Debug, Default)]
pub struct Report {
    pub created_registry: bool,
    pub users_created: usize,
    pub users_present: usize,
    /// Created with a weak hash form: their next login replaces it with argon2id.
    pub users_rehashed_at_login: usize,
    /// Users who cannot log in with the password they had, and why.
    pub users_to_reset: Vec<(String, String)>,
    /// Packages read (cached ones left out are not counted).
    pub packages: usize,
    pub imported: usize,
    pub already_here: usize,
    /// Imported, and held for review by the policy (`gatehouse quarantine list`).
    pub held: Vec<(String, String)>,
    /// Refused by the policy: spec, which rule and why.
    pub refused: Vec<(String, String)>,
    /// Could not be imported for another reason: spec, why.
    pub failed: Vec<(String, String)>,
    /// Verdaccio's cached copies of upstream packages, left out without
    /// --include-cache: whole packages, and versions (of those and of published ones).
    pub cached_packages_skipped: usize,
    pub cached_skipped: usize,
    /// Cached versions whose tarball Verdaccio never downloaded (nothing to import).
    pub cached_without_tarball: usize,
    /// Packages that have no maintainer here (none recorded, no --owner).
    pub without_maintainer: Vec<String>,
    pub tags_set: usize,
}

impl Report {
    fn absorb(&mut self, package: PackageReport) {
        if package.skipped_as_cache {
            self.cached_packages_skipped += 1;
        } else {
            self.packages += 1;
        }
        self.imported += package.imported;
        self.already_here += package.already_here;
        self.cached_skipped += package.cached_skipped;
        self.cached_without_tarball += package.cached_without_tarball;
        self.tags_set += package.tags_set;
        self.held.extend(package.held);
        self.refused.extend(package.refused);
        self.failed.extend(package.failed);
        self.without_maintainer.extend(package.without_maintainer);
    }
}

#[derive(Debug, Default)]
struct PackageReport {
    skipped_as_cache: bool,
    imported: usize,
    already_here: usize,
    cached_skipped: usize,
    cached_without_tarball: usize,
    tags_set: usize,
    held: Vec<(String, String)>,
    refused: Vec<(String, String)>,
    failed: Vec<(String, String)>,
    without_maintainer: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Verdaccio(#[from] VerdaccioError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(
        "--owner {0}: there is no such user; create it first (gatehouse user add {0}) or import it with --htpasswd"
    )]
    NoOwner(String),
}

/// Imports into one registry. Holds exactly what an import touches.
pub struct Importer<'a> {
    pub admission: &'a Admission,
    pub services: &'a Services,
    pub meta: &'a Meta,
    /// The largest tarball read (the registry's publish limit).
    pub max_tarball_bytes: u64,
}

impl Importer<'_> {
    /// Imports a Verdaccio storage folder into `registry`, created (private) when
    /// missing once the folder proved to be Verdaccio's; `progress` hears (packages
    /// done, of).
    pub async fn verdaccio(
        &self,
        actor: &Actor,
        registry: &RegistryName,
        options: &VerdaccioImport<'_>,
        progress: impl Fn(usize, usize),
    ) -> Result<Report, ImportError> {
        let storage = Storage::open(options.storage).await?;
        let packages = storage.packages().await?;
        let mut report = Report::default();
        let registry = match self.services.registry(registry).await {
            Ok(registry) => registry,
            Err(ServiceError::NotFound(_)) => {
                report.created_registry = true;
                self.services.create_registry(actor, registry, false, &[]).await?
            }
            Err(e) => return Err(e.into()),
        };
        let registry = &registry;
        if let Some(path) = options.htpasswd {
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|cause| VerdaccioError::Io {
                    path: path.to_owned(),
                    cause,
                })?;
            self.users(actor, &text, &mut report).await;
        }
        let owner = match options.owner {
            Some(name) => Some(
                self.services
                    .user(name)
                    .await
                    .map_err(|_| ImportError::NoOwner(name.to_owned()))?,
            ),
            None => None,
        };
        let total = packages.len();
        let mut done = futures_util::stream::iter(&packages)
            .map(|dir| self.package(actor, registry, dir, options.include_cache, owner.as_ref()))
            .buffer_unordered(PARALLEL_PACKAGES);
        while let Some(package) = done.next().await {
            report.absorb(package);
            progress(report.packages, total);
        }
        Ok(report)
    }

    /// Creates htpasswd's users with the hashes they had; a weak form is replaced at
    /// the first login, a form nobody can verify is named for a reset.
    async fn users(&self, actor: &Actor, htpasswd: &str, report: &mut Report) {
        for line in verdaccio::parse_htpasswd(htpasswd) {
            let user = match line {
                Ok(user) => user,
                Err(why) => {
                    report.users_to_reset.push(("(htpasswd)".into(), why));
                    continue;
                }
            };
            let kind = HashKind::of(&user.hash);
            match self
                .services
                .import_user(actor, &user.name, &user.hash, "verdaccio")
                .await
            {
                Ok(None) => report.users_present += 1,
                Ok(Some(_)) => {
                    report.users_created += 1;
                    match kind {
                        None => report.users_to_reset.push((
                            user.name.clone(),
                            format!(
                                "its password hash is in a form this server cannot verify; \
                                 set a new one: gatehouse user passwd {}",
                                user.name
                            ),
                        )),
                        Some(kind) if kind.is_weak() => report.users_rehashed_at_login += 1,
                        Some(_) => {}
                    }
                }
                Err(e) => report.users_to_reset.push((user.name.clone(), e.to_string())),
            }
        }
    }

    async fn package(
        &self,
        actor: &Actor,
        registry: &Registry,
        dir: &PackageDir,
        include_cache: bool,
        owner: Option<&User>,
    ) -> PackageReport {
        let mut report = PackageReport::default();
        let document = match dir.read_document().await {
            Ok(document) => document,
            Err(why) => {
                report.failed.push((dir.name.clone(), why));
                return report;
            }
        };
        if !dir.listed && !include_cache {
            report.skipped_as_cache = true;
            report.cached_skipped = document.versions.len();
            return report;
        }
        let record = match self.meta.package(registry.id, &document.name).await {
            Ok(record) => record,
            Err(e) => {
                report.failed.push((dir.name.clone(), e.to_string()));
                return report;
            }
        };
        let here = |version: &Version| {
            record
                .as_ref()
                .is_some_and(|r| r.live_versions().any(|v| v.version == version.as_str()))
        };
        let maintainers = self.maintainers_here(&document, owner).await;
        let publisher = maintainers.first();
        let mut admitted = Vec::new();
        for stored in &document.versions {
            let spec = format!("{}@{}", document.name, stored.version);
            if here(&stored.version) {
                report.already_here += 1;
                admitted.push(stored.version.clone());
                continue;
            }
            // A published package can hold cached versions too (an uplink's, merged).
            if stored.cached_from.is_some() && !include_cache {
                report.cached_skipped += 1;
                continue;
            }
            match self.version(registry, dir, &document.name, stored, publisher).await {
                Ok(Imported::Yes { notice }) => {
                    report.imported += 1;
                    admitted.push(stored.version.clone());
                    if let Some(notice) = notice {
                        report.held.push((spec, notice));
                    }
                }
                Ok(Imported::NoTarball) => report.cached_without_tarball += 1,
                Err(Failure::Policy(why)) => report.refused.push((spec, why)),
                Err(Failure::Other(why)) => report.failed.push((spec, why)),
            }
        }
        if admitted.is_empty() {
            return report;
        }
        match self.meta.package(registry.id, &document.name).await {
            Ok(Some(record)) => {
                self.finish_package(
                    actor,
                    registry,
                    &record,
                    &document,
                    &admitted,
                    &maintainers,
                    &mut report,
                )
                .await;
            }
            Ok(None) => {}
            Err(e) => report.failed.push((dir.name.clone(), e.to_string())),
        }
        report
    }

    /// Who maintains the package here: its recorded maintainers who are users here,
    /// else the `--owner`. The first publishes its versions.
    async fn maintainers_here(&self, document: &Document, owner: Option<&User>) -> Vec<User> {
        let mut found = Vec::new();
        for name in &document.maintainers {
            if let Ok(Some(user)) = self.meta.user(name).await {
                found.push(user);
            }
        }
        if found.is_empty() {
            found.extend(owner.cloned());
        }
        found
    }

    async fn version(
        &self,
        registry: &Registry,
        dir: &PackageDir,
        name: &PackageName,
        stored: &StoredVersion,
        publisher: Option<&User>,
    ) -> Result<Imported, Failure> {
        // Verdaccio caches a tarball only once someone downloaded it.
        if stored.cached_from.is_some() && !tokio::fs::try_exists(dir.dir.join(&stored.file)).await.unwrap_or(false) {
            return Ok(Imported::NoTarball);
        }
        let tarball = dir
            .read_tarball(&stored.file, self.max_tarball_bytes)
            .await
            .map_err(Failure::Other)?;
        let digests = Digests::of(&tarball);
        let dist = stored.manifest.get("dist");
        let declared = |key: &str| dist.and_then(|d| d.get(key)).and_then(Value::as_str);
        integrity::verify_declared(&digests, declared("integrity"), declared("shasum"))
            .map_err(|e| Failure::Other(format!("the tarball {} does not match its manifest: {e}", stored.file)))?;
        let origin = match &stored.cached_from {
            None => Origin::Import {
                from: "verdaccio",
                published_at: stored.published_at,
            },
            Some(uplink) => Origin::Upstream {
                label: format!("verdaccio:{uplink}"),
                published_at: stored.published_at,
            },
        };
        let candidate = Candidate {
            registry,
            target: None,
            name: name.clone(),
            version: stored.version.clone(),
            manifest: stored.manifest.clone(),
            tarball,
            staged: None,
            digests,
            tags: Vec::new(),
            publisher: if stored.cached_from.is_none() { publisher } else { None },
            origin,
            client_addr: None,
            policy: None,
            provenance: None,
        };
        match self.admission.admit(candidate).await {
            Ok(admitted) => Ok(Imported::Yes {
                notice: admitted.notice,
            }),
            Err(AdmissionError::Policy(refusal)) => Err(Failure::Policy(refusal.message)),
            // Another import (or a publish) got there first: it is here.
            Err(AdmissionError::VersionExists(_)) => Ok(Imported::Yes { notice: None }),
            Err(e) => Err(Failure::Other(with_causes(&e))),
        }
    }

    /// The package's dist-tags as Verdaccio had them, for versions that came in;
    /// `latest` moves to the highest version that came in when its own did not. Then
    /// its maintainers.
    #[allow(clippy::too_many_arguments)]
    async fn finish_package(
        &self,
        actor: &Actor,
        registry: &Registry,
        record: &PackageRecord,
        document: &Document,
        admitted: &[Version],
        maintainers: &[User],
        report: &mut PackageReport,
    ) {
        let mut tags: BTreeMap<String, String> = document
            .dist_tags
            .iter()
            .filter(|(_, v)| admitted.iter().any(|a| a.as_str() == v.as_str()))
            .map(|(t, v)| (t.clone(), v.clone()))
            .collect();
        if !tags.contains_key("latest") {
            let stable = admitted
                .iter()
                .filter(|v| !v.is_prerelease())
                .max_by(|a, b| a.semver().cmp(b.semver()));
            let highest = stable.or_else(|| admitted.iter().max_by(|a, b| a.semver().cmp(b.semver())));
            if let Some(highest) = highest {
                tags.insert("latest".into(), highest.to_string());
            }
        }
        for (tag, version) in &tags {
            if record.dist_tags.get(tag) == Some(version) {
                continue;
            }
            let set = match DistTag::parse(tag) {
                Ok(parsed) => self
                    .services
                    .set_dist_tag(actor, registry, record, &parsed, version)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match set {
                Ok(()) => report.tags_set += 1,
                Err(why) => report
                    .failed
                    .push((format!("{}@{version} (tag {tag})", record.name), why)),
            }
        }
        let mut owners: Vec<String> = maintainers.iter().map(|u| u.name.clone()).collect();
        let current: Vec<&str> = record.maintainers.iter().map(|m| m.name.as_str()).collect();
        if owners.is_empty() {
            if current.is_empty() {
                report.without_maintainer = Some(record.name.to_string());
            }
        } else if owners.iter().any(|o| !current.contains(&o.as_str())) {
            // Maintainers already here stay.
            for kept in current {
                if !owners.iter().any(|o| o == kept) {
                    owners.push(kept.to_owned());
                }
            }
            if let Err(e) = self.services.set_owners(actor, registry, record, None, &owners).await {
                report
                    .failed
                    .push((format!("{} (maintainers)", record.name), e.to_string()));
            }
        }
    }
}

enum Imported {
    Yes {
        notice: Option<String>,
    },
    /// A cached version whose tarball Verdaccio does not hold.
    NoTarball,
}

enum Failure {
    Policy(String),
    Other(String),
}

/// An admission error with its causes, on one line.
fn with_causes(error: &AdmissionError) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}
