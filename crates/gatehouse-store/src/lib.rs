//! Persistence: metadata (`meta`, behind traits so SQLite and PostgreSQL can both
//! implement it) and tarball bytes (`blobs`, content-addressed). Knows nothing of HTTP.

pub mod blobs;
#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub mod housekeeping;
pub mod postgres;
pub mod registry;
mod rows;
pub mod sqlite;
pub mod storage;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod transfer;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::registry::{RegistryName, Role};
use gatehouse_npm::name::PackageName;
pub use gatehouse_npm::packument::Maintainer;

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint said no.
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// The row changed since the caller read it (optimistic lock on `rev`).
    #[error("the package changed since it was read")]
    Stale,
    #[error("not found")]
    NotFound,
    /// The database failed (unreachable, I/O, a bug); the cause is kept for the log.
    #[error("database error: {0}")]
    Database(Box<dyn std::error::Error + Send + Sync>),
    /// The database cannot be reached right now (down, restarting, the pool
    /// exhausted): trying again later may succeed.
    #[error("the database is unavailable: {0}")]
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// What already exists, when a write would duplicate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error("the version exists")]
    VersionExists,
    #[error("a package whose name differs only in case exists")]
    NameTakenIgnoringCase,
    #[error("a registry with that name exists")]
    RegistryExists,
    #[error("a user with that name exists")]
    UserExists,
    #[error("the registry already has that upstream")]
    UpstreamExists,
    /// Any other unique constraint (a bug, or a race the caller did not expect).
    #[error("it exists already")]
    Exists,
}

/// What an acknowledged write survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Flushed to disk (fsync) before it is acknowledged: survives power loss.
    #[default]
    Full,
    /// Written through to the OS, which flushes it soon after: survives the server
    /// crashing, not the machine losing power (the last writes may then be lost,
    /// never half-written). Verdaccio never fsyncs. Small publishes gain little (a
    /// durable one waits on one fsync and writes no file on the way); large tarballs
    /// and other writes gain where fsync is slow (network volumes).
    Process,
}

/// Milliseconds since the Unix epoch: the one time type in both backends.
pub use gatehouse_npm::packument::Millis;

pub fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegistryId(pub i64);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub i64);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackageId(pub i64);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpstreamId(pub i64);

/// One upstream of a registry, as stored. `spec` is parsed by `upstream::UpstreamSpec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRow {
    pub id: UpstreamId,
    pub spec: String,
    pub token: Option<String>,
    pub basic_auth: Option<String>,
    pub internal: bool,
}

/// Adding an upstream.
#[derive(Debug, Clone, Default)]
pub struct NewUpstream {
    pub spec: String,
    pub token: Option<String>,
    pub basic_auth: Option<String>,
    pub internal: bool,
}

/// The last copy of an upstream packument and its validators.
#[derive(Debug, Clone)]
pub struct StoredPackument {
    pub body: Vec<u8>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub fetched_at: Millis,
}

#[derive(Debug, Clone)]
pub struct Registry {
    pub id: RegistryId,
    pub name: RegistryName,
    pub public_read: bool,
    /// Role of every logged-in user without an explicit grant; `None`: no access.
    pub default_role: Option<Role>,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub email: Option<String>,
    pub is_admin: bool,
    pub password_hash: String,
    pub created_at: Millis,
    /// Disabled users can't log in and their tokens are refused.
    pub disabled: bool,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub key: String,
    pub secret_hash: String,
    pub display: String,
    pub user_id: UserId,
    pub name: Option<String>,
    pub readonly: bool,
    pub cidr_whitelist: Vec<String>,
    pub registries: Vec<String>,
    pub packages: Vec<String>,
    pub expires_at: Option<Millis>,
    /// Exchanged by trusted publishing: who published (JSON); such a token only publishes.
    pub published_by: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub key: String,
    pub display: String,
    pub user: User,
    pub name: Option<String>,
    pub readonly: bool,
    pub cidr_whitelist: Vec<String>,
    /// Registries the token is limited to; empty: all.
    pub registries: Vec<String>,
    /// Package name patterns (`@acme/*`) the token is limited to; empty: all.
    pub packages: Vec<String>,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
    /// See `NewToken::published_by`.
    pub published_by: Option<String>,
}

/// Where a version's bytes live: the sha512 of the tarball, in hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub sha512_hex: String,
    pub size: u64,
}

/// A version and the blob it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobReference {
    pub registry: String,
    pub package: String,
    pub version: String,
    pub blob: BlobRef,
}

/// A package about to get a new version, as a publish checks it (one query).
#[derive(Debug, Clone)]
pub struct PublishTarget {
    pub package: PackageId,
    pub maintainers: Vec<Maintainer>,
    /// Whether the package holds (or held) the release being published.
    pub release_taken: bool,
}

/// One package of one registry, with everything a packument is built from.
#[derive(Debug, Clone)]
pub struct PackageRecord {
    pub id: PackageId,
    pub name: PackageName,
    pub rev: i64,
    pub created_at: Millis,
    pub modified_at: Millis,
    pub internal: bool,
    pub dist_tags: BTreeMap<String, String>,
    pub maintainers: Vec<Maintainer>,
    /// Every version ever published, unpublished ones included (for `time`).
    pub versions: Vec<VersionRecord>,
}

impl PackageRecord {
    pub fn live_versions(&self) -> impl Iterator<Item = &VersionRecord> {
        self.versions.iter().filter(|v| v.unpublished_at.is_none())
    }

    pub fn is_fully_unpublished(&self) -> bool {
        self.live_versions().next().is_none()
    }

    /// What the packument is built from.
    pub fn view(&self) -> gatehouse_npm::packument::PackageView<'_> {
        gatehouse_npm::packument::PackageView {
            name: &self.name,
            rev: self.rev,
            created_at: self.created_at,
            modified_at: self.modified_at,
            dist_tags: &self.dist_tags,
            maintainers: &self.maintainers,
            versions: self
                .versions
                .iter()
                .map(|v| gatehouse_npm::packument::VersionView {
                    version: &v.version,
                    manifest: &v.manifest,
                    published_at: v.published_at,
                    deprecated: v.deprecated.as_deref(),
                    unpublished: v.unpublished_at.is_some(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct VersionRecord {
    pub version: String,
    /// JSON object text, as stored.
    pub manifest: String,
    pub blob: BlobRef,
    pub published_at: Millis,
    pub publisher: Option<String>,
    pub deprecated: Option<String>,
    pub unpublished_at: Option<Millis>,
    /// `publish`, `upstream:LABEL`, `promotion:REGISTRY` or `import:FROM`.
    pub source: String,
    /// What the tarball showed when it was inspected (JSON), if recorded.
    pub facts: Option<String>,
}

impl VersionRecord {
    /// Published to this registry (or imported from where it was published), not
    /// pulled or promoted into it.
    pub fn published_here(&self) -> bool {
        published_here(&self.source)
    }
}

/// Whether a version's `source` (see `NewVersion::source`) says it was published here.
fn published_here(source: &str) -> bool {
    source == "publish" || source.starts_with("import:")
}

/// A version on its way in (see `admission`).
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub registry_id: RegistryId,
    pub name: PackageName,
    pub version: String,
    pub release_key: String,
    pub manifest: String,
    pub blob: BlobRef,
    pub publisher: Option<UserId>,
    pub publisher_name: Option<String>,
    pub deprecated: Option<String>,
    pub source: String,
    /// What the tarball showed when it was inspected (JSON), for the firewall's rules.
    pub facts: Option<String>,
    /// It runs install scripts (declared, or a binding.gyp).
    pub install_scripts: bool,
    /// Its manifest carries provenance attestations.
    pub attested: bool,
    /// The verified attestations served for it (`[{predicateType, bundle}]`, JSON).
    pub attestations: Option<String>,
    /// Dist-tags to point at this version; `latest` is added when the package has none.
    pub tags: Vec<String>,
    /// Whether a package created by this insert is flagged internal.
    pub internal_if_new: bool,
    /// When the version was first published (upstream time for pulled versions); now if `None`.
    pub published_at: Option<Millis>,
    /// Point `latest` at this version when the package has no `latest` (publishes do,
    /// pulls don't: their tags come from the upstream).
    pub claim_latest: bool,
    /// Committed with the version: no version without its audit entry, and one commit.
    pub audit: AuditEntry,
    /// The package's id when the caller knows it exists (packages are never deleted):
    /// the store need not look it up.
    pub known_package: Option<PackageId>,
    /// The tarball's bytes when its blob file is not durable yet: committed to the
    /// blob journal with the version (see `blob_journal`).
    pub journal: Option<bytes::Bytes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    pub package_id: PackageId,
    pub created_package: bool,
}

#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub text: String,
    pub size: u32,
    pub from: u32,
}

#[derive(Debug, Clone)]
pub struct SearchHit {
    pub name: PackageName,
    pub version: Option<String>,
    pub description: Option<String>,
    pub keywords: Vec<String>,
    pub maintainers: Vec<String>,
    pub modified_at: Millis,
}

/// What an audit entry records. Stored as its dotted name (`as_str`), which is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    VersionPublish,
    VersionPull,
    VersionImport,
    VersionPromote,
    VersionPush,
    VersionUnpublish,
    VersionDeprecate,
    VersionUndeprecate,
    PackageUnpublish,
    PackageOwners,
    PackageInternal,
    PackageClaim,
    PackageUnclaim,
    PackagePurge,
    DistTagSet,
    DistTagRemove,
    RegistryCreate,
    RegistryDelete,
    RegistryRename,
    RegistryClone,
    RegistryVisibility,
    RegistryGrant,
    RegistryRevoke,
    RegistryDefaultRole,
    RegistryUpstreamAdd,
    RegistryUpstreamRemove,
    /// The upstream list reordered, or an upstream's internal flag changed.
    RegistryUpstreamChange,
    UserCreate,
    UserRegister,
    UserPassword,
    UserDisable,
    UserEnable,
    UserAdmin,
    UserDelete,
    UserUnlock,
    TokenCreate,
    TokenRevoke,
    AuthLogin,
    AuthLoginFailed,
    /// Credentials sent with a request were refused.
    AuthFailed,
    PolicySet,
    PolicyDecision,
    PolicyExceptionAdd,
    PolicyExceptionRemove,
    QuarantineApprove,
    QuarantineReject,
    AdvisoriesImport,
    TrustAdd,
    TrustRemove,
    TokenExchange,
}

impl AuditAction {
    pub const ALL: &[AuditAction] = &[
        AuditAction::VersionPublish,
        AuditAction::VersionPull,
        AuditAction::VersionImport,
        AuditAction::VersionPromote,
        AuditAction::VersionPush,
        AuditAction::VersionUnpublish,
        AuditAction::VersionDeprecate,
        AuditAction::VersionUndeprecate,
        AuditAction::PackageUnpublish,
        AuditAction::PackageOwners,
        AuditAction::PackageInternal,
        AuditAction::PackageClaim,
        AuditAction::PackageUnclaim,
        AuditAction::PackagePurge,
        AuditAction::DistTagSet,
        AuditAction::DistTagRemove,
        AuditAction::RegistryCreate,
        AuditAction::RegistryDelete,
        AuditAction::RegistryRename,
        AuditAction::RegistryClone,
        AuditAction::RegistryVisibility,
        AuditAction::RegistryGrant,
        AuditAction::RegistryRevoke,
        AuditAction::RegistryDefaultRole,
        AuditAction::RegistryUpstreamAdd,
        AuditAction::RegistryUpstreamRemove,
        AuditAction::RegistryUpstreamChange,
        AuditAction::UserCreate,
        AuditAction::UserRegister,
        AuditAction::UserPassword,
        AuditAction::UserDisable,
        AuditAction::UserEnable,
        AuditAction::UserAdmin,
        AuditAction::UserDelete,
        AuditAction::UserUnlock,
        AuditAction::TokenCreate,
        AuditAction::TokenRevoke,
        AuditAction::AuthLogin,
        AuditAction::AuthLoginFailed,
        AuditAction::AuthFailed,
        AuditAction::PolicySet,
        AuditAction::PolicyDecision,
        AuditAction::PolicyExceptionAdd,
        AuditAction::PolicyExceptionRemove,
        AuditAction::QuarantineApprove,
        AuditAction::QuarantineReject,
        AuditAction::AdvisoriesImport,
        AuditAction::TrustAdd,
        AuditAction::TrustRemove,
        AuditAction::TokenExchange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::VersionPublish => "version.publish",
            AuditAction::VersionPull => "version.pull",
            AuditAction::VersionImport => "version.import",
            AuditAction::VersionPromote => "version.promote",
            AuditAction::VersionPush => "version.push",
            AuditAction::VersionUnpublish => "version.unpublish",
            AuditAction::VersionDeprecate => "version.deprecate",
            AuditAction::VersionUndeprecate => "version.undeprecate",
            AuditAction::PackageUnpublish => "package.unpublish",
            AuditAction::PackageOwners => "package.owners",
            AuditAction::PackageInternal => "package.internal",
            AuditAction::PackageClaim => "package.claim",
            AuditAction::PackageUnclaim => "package.unclaim",
            AuditAction::PackagePurge => "package.purge",
            AuditAction::DistTagSet => "dist-tag.set",
            AuditAction::DistTagRemove => "dist-tag.remove",
            AuditAction::RegistryCreate => "registry.create",
            AuditAction::RegistryDelete => "registry.delete",
            AuditAction::RegistryRename => "registry.rename",
            AuditAction::RegistryClone => "registry.clone",
            AuditAction::RegistryVisibility => "registry.visibility",
            AuditAction::RegistryGrant => "registry.grant",
            AuditAction::RegistryRevoke => "registry.revoke",
            AuditAction::RegistryDefaultRole => "registry.default_role",
            AuditAction::RegistryUpstreamAdd => "registry.upstream_add",
            AuditAction::RegistryUpstreamRemove => "registry.upstream_remove",
            AuditAction::RegistryUpstreamChange => "registry.upstream_change",
            AuditAction::UserCreate => "user.create",
            AuditAction::UserRegister => "user.register",
            AuditAction::UserPassword => "user.password",
            AuditAction::UserDisable => "user.disable",
            AuditAction::UserEnable => "user.enable",
            AuditAction::UserAdmin => "user.admin",
            AuditAction::UserDelete => "user.delete",
            AuditAction::UserUnlock => "user.unlock",
            AuditAction::TokenCreate => "token.create",
            AuditAction::TokenRevoke => "token.revoke",
            AuditAction::AuthLogin => "auth.login",
            AuditAction::AuthLoginFailed => "auth.login_failed",
            AuditAction::AuthFailed => "auth.failed",
            AuditAction::PolicySet => "policy.set",
            AuditAction::PolicyDecision => "policy.decision",
            AuditAction::PolicyExceptionAdd => "policy.exception_add",
            AuditAction::PolicyExceptionRemove => "policy.exception_remove",
            AuditAction::QuarantineApprove => "quarantine.approve",
            AuditAction::QuarantineReject => "quarantine.reject",
            AuditAction::AdvisoriesImport => "advisories.import",
            AuditAction::TrustAdd => "trust.add",
            AuditAction::TrustRemove => "trust.remove",
            AuditAction::TokenExchange => "token.exchange",
        }
    }

    pub fn parse(raw: &str) -> Option<AuditAction> {
        AuditAction::ALL.iter().copied().find(|a| a.as_str() == raw)
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: Option<String>,
    pub action: AuditAction,
    pub registry: Option<String>,
    pub package: Option<String>,
    pub version: Option<String>,
    pub detail: Option<String>,
    pub client_addr: Option<String>,
}

impl AuditEntry {
    /// An entry for `action`, everything else unset.
    pub fn new(action: AuditAction) -> Self {
        AuditEntry {
            actor: None,
            action,
            registry: None,
            package: None,
            version: None,
            detail: None,
            client_addr: None,
        }
    }
}

#[async_trait]
pub trait RegistryStore: Send + Sync {
    async fn create_registry(&self, name: &RegistryName, public_read: bool) -> StoreResult<Registry>;
    async fn registry(&self, name: &RegistryName) -> StoreResult<Option<Registry>>;
    async fn registries(&self) -> StoreResult<Vec<Registry>>;
    async fn set_registry_public(&self, id: RegistryId, public_read: bool) -> StoreResult<()>;
    /// Deletes a registry with its packages, versions, upstreams, grants and claims;
    /// their blobs are left to garbage collection (other registries may share them).
    async fn delete_registry(&self, id: RegistryId) -> StoreResult<()>;
    /// Renames a registry; other registries' `registry:OLD` upstreams and tokens
    /// limited to it follow. `Conflict` when the new name is taken.
    async fn rename_registry(&self, id: RegistryId, old: &RegistryName, new: &RegistryName) -> StoreResult<()>;
    /// A new registry `name` with everything `source` has: settings, upstreams, grants,
    /// claims, and every package with its versions (the same blobs), tags and
    /// maintainers. One transaction.
    async fn clone_registry(&self, source: RegistryId, name: &RegistryName) -> StoreResult<Registry>;
    async fn set_default_role(&self, id: RegistryId, role: Option<Role>) -> StoreResult<()>;
    async fn member_role(&self, id: RegistryId, user: UserId) -> StoreResult<Option<Role>>;
    /// Grants `role` (or removes the grant with `None`).
    async fn set_member_role(&self, id: RegistryId, user: UserId, role: Option<Role>) -> StoreResult<()>;
    /// Every grant, by registry then user name.
    async fn grants(&self) -> StoreResult<Vec<Grant>>;
}

/// A role granted to a user in a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub registry: RegistryName,
    pub user: String,
    pub role: Role,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn create_user(
        &self,
        name: &str,
        email: Option<&str>,
        password_hash: &str,
        is_admin: bool,
    ) -> StoreResult<User>;
    async fn user(&self, name: &str) -> StoreResult<Option<User>>;
    async fn users(&self) -> StoreResult<Vec<User>>;
    /// Replaces a user's password hash; `NotFound` when there is no such user.
    async fn set_password_hash(&self, user: UserId, password_hash: &str) -> StoreResult<()>;
    /// Disables (or enables) a user; every process drops its cached credentials.
    async fn set_user_disabled(&self, user: UserId, disabled: bool) -> StoreResult<()>;
    async fn set_user_admin(&self, user: UserId, admin: bool) -> StoreResult<()>;
    /// Deletes a user with their tokens, grants and maintainerships.
    async fn delete_user(&self, user: UserId) -> StoreResult<()>;
    /// Forgets the failed logins counted against the user name `name`.
    async fn clear_login_failures(&self, name: &str) -> StoreResult<()>;
    /// Counts a failed login against `key` (`user:NAME`, `addr:IP`); a new window
    /// ends at `window_ends`. Returns the count in the window.
    async fn count_login_failure(&self, key: &str, now: Millis, window_ends: Millis) -> StoreResult<u32>;
    /// The failed logins counted against `key` in its window at `now`.
    async fn login_failures(&self, key: &str, now: Millis) -> StoreResult<u32>;
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn insert_token(&self, token: &NewToken) -> StoreResult<()>;
    async fn token_by_secret_hash(&self, secret_hash: &str) -> StoreResult<Option<Token>>;
    async fn touch_token(&self, secret_hash: &str, at: Millis) -> StoreResult<()>;
    async fn tokens_of(&self, user: UserId) -> StoreResult<Vec<Token>>;
    async fn all_tokens(&self) -> StoreResult<Vec<Token>>;
    /// Revokes by public key or by secret hash; false when nothing (live) matched.
    /// `user: None` revokes whoever owns it (administrators).
    async fn revoke_token(&self, user: Option<UserId>, key_or_hash: &str, at: Millis) -> StoreResult<bool>;
}

#[async_trait]
pub trait PackageStore: Send + Sync {
    async fn package(&self, registry: RegistryId, name: &PackageName) -> StoreResult<Option<PackageRecord>>;
    /// What a publish checks before it writes (without loading the versions); `None`
    /// when the package is absent.
    async fn publish_target(
        &self,
        registry: RegistryId,
        name: &PackageName,
        release_key: &str,
    ) -> StoreResult<Option<PublishTarget>>;
    /// Whether the package holds (or held: unpublished ones count) this release.
    async fn release_taken(&self, registry: RegistryId, name: &PackageName, release_key: &str) -> StoreResult<bool>;
    /// A package whose name equals `name` ignoring case (for the new-name rule).
    async fn package_name_folded(&self, registry: RegistryId, name: &PackageName) -> StoreResult<Option<PackageName>>;
    /// Adds a version atomically: creates the package if needed, refuses an existing
    /// release (`Conflict`), applies tags, bumps `rev`.
    async fn insert_version(&self, new: &NewVersion) -> StoreResult<Inserted>;
    /// Sets (`Some`) or clears (`None`) deprecation messages of existing versions.
    async fn set_deprecations(&self, package: PackageId, changes: &[(String, Option<String>)]) -> StoreResult<()>;
    async fn set_dist_tag(&self, package: PackageId, tag: &str, version: &str) -> StoreResult<()>;
    async fn remove_dist_tag(&self, package: PackageId, tag: &str) -> StoreResult<bool>;
    /// Marks versions unpublished, drops tags pointing at them and sets the given tags
    /// (the client recomputes `latest`). Checks `expected_rev`.
    async fn unpublish_versions(
        &self,
        package: PackageId,
        expected_rev: Option<i64>,
        versions: &[String],
        dist_tags: &BTreeMap<String, String>,
    ) -> StoreResult<()>;
    async fn unpublish_package(&self, package: PackageId, expected_rev: Option<i64>) -> StoreResult<()>;
    async fn set_maintainers(&self, package: PackageId, expected_rev: Option<i64>, users: &[UserId])
    -> StoreResult<()>;
    async fn search(&self, registry: RegistryId, query: &SearchQuery) -> StoreResult<(Vec<SearchHit>, u64)>;
    async fn all_packages(&self, registry: RegistryId) -> StoreResult<Vec<PackageName>>;
    /// Every version of every registry with its blob, unpublished ones included (their
    /// rows keep their blobs): what `check` verifies and `gc` must keep.
    async fn blob_references(&self) -> StoreResult<Vec<BlobReference>>;
    async fn set_internal(&self, package: PackageId, internal: bool) -> StoreResult<()>;
    /// The live versions of a package with only what the firewall compares a new
    /// version with (install scripts, attestations), read without loading manifests.
    async fn version_history(&self, registry: RegistryId, name: &PackageName) -> StoreResult<Vec<VersionHistory>>;
    /// The attestations stored with a live version (`[{predicateType, bundle}]`,
    /// JSON), `None` when it has none or does not exist.
    async fn attestations(
        &self,
        registry: RegistryId,
        name: &PackageName,
        version: &str,
    ) -> StoreResult<Option<String>>;
}

/// A version as [`PackageStore::version_history`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionHistory {
    pub version: String,
    pub published_at: Millis,
    pub source: String,
    /// It runs install scripts (declared, or a binding.gyp when it was stored).
    pub install_scripts: bool,
    /// The manifest has `dist.attestations`.
    pub attested: bool,
}

impl VersionHistory {
    /// Published to this registry (or imported from where it was published), not
    /// pulled or promoted into it.
    pub fn published_here(&self) -> bool {
        published_here(&self.source)
    }
}

/// One entry of the change log (see `ChangeLog`).
#[derive(Debug, Clone)]
pub struct Change {
    pub seq: i64,
    pub kind: ChangeKind,
    /// Written by this store (this process).
    pub own: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// One package (in some registry) changed.
    Package(PackageName),
    /// A registry's settings, roles or upstreams changed: anything in it may look different.
    Registry,
    /// Tokens were revoked, or users changed.
    Credentials,
    /// A user's failed-login count was cleared.
    LoginUnlocked(String),
    /// The advisory database changed: every decision may be different.
    Advisories,
    /// A registry's policy changed: its decisions (and those of registries behind it).
    Policy,
}

#[async_trait]
pub trait ChangeLog: Send + Sync {
    /// The newest sequence number (0 when empty).
    async fn last_change(&self) -> StoreResult<i64>;
    async fn changes_since(&self, seq: i64) -> StoreResult<Vec<Change>>;
    /// Drops entries older than `before`.
    async fn prune_changes(&self, before: Millis) -> StoreResult<()>;
    /// Notified when another process may have logged a change, where the database
    /// can say so (PostgreSQL's `LISTEN`), so followers read at once instead of at
    /// their next poll. `None`: poll only. A wake-up may be lost (a reconnect): it
    /// only hastens the poll, the log is the truth.
    fn change_wakeups(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}

#[async_trait]
pub trait UpstreamStore: Send + Sync {
    /// The registry's upstreams in the order they are consulted.
    async fn upstreams(&self, registry: RegistryId) -> StoreResult<Vec<UpstreamRow>>;
    /// Appends an upstream (`Conflict` when the registry already has it).
    async fn add_upstream(&self, registry: RegistryId, upstream: &NewUpstream) -> StoreResult<()>;
    async fn remove_upstream(&self, registry: RegistryId, spec: &str) -> StoreResult<bool>;
    /// Replaces the whole list (configuration file sync), keeping ids of unchanged entries.
    async fn set_upstreams(&self, registry: RegistryId, upstreams: &[NewUpstream]) -> StoreResult<()>;
    async fn stored_packument(&self, upstream: UpstreamId, name: &PackageName) -> StoreResult<Option<StoredPackument>>;
    async fn store_packument(&self, upstream: UpstreamId, name: &PackageName, doc: &StoredPackument)
    -> StoreResult<()>;
    async fn touch_packument(&self, upstream: UpstreamId, name: &PackageName, fetched_at: Millis) -> StoreResult<()>;
    async fn delete_packument(&self, upstream: UpstreamId, name: &PackageName) -> StoreResult<()>;
    /// Drops the stored upstream copies of `name` for every upstream of `registry`, so
    /// the next request asks the upstreams again; every process drops its prepared copy.
    /// Returns how many copies there were.
    async fn purge_packuments(&self, registry: RegistryId, name: &PackageName) -> StoreResult<u64>;
}

/// A row of the blob journal: a blob whose bytes are in the database because its file
/// may not be written, or not durable, yet.
#[derive(Debug, Clone)]
pub struct JournaledBlob {
    pub id: i64,
    pub sha512_hex: String,
    pub bytes: Vec<u8>,
}

/// The blob journal (see `blob_journal`). Rows are added by `insert_version`.
#[async_trait]
pub trait BlobJournalStore: Send + Sync {
    /// Up to `limit` rows after the row `after` (0: from the first), oldest first.
    async fn journaled_blobs(&self, after: i64, limit: u32) -> StoreResult<Vec<JournaledBlob>>;
    /// The bytes of a blob whose file may not be written yet.
    async fn journaled_bytes(&self, sha512_hex: &str) -> StoreResult<Option<Vec<u8>>>;
    /// The sha512 of every journaled blob, without their bytes (housekeeping, counts).
    async fn journaled_keys(&self) -> StoreResult<Vec<String>>;
    /// Deletes the rows up to `id`, whose files are durable now.
    async fn forget_journaled(&self, up_to: i64) -> StoreResult<()>;
}

#[async_trait]
pub trait AuditLog: Send + Sync {
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// Entries matching `query`, newest first.
    async fn audit_entries(&self, query: &AuditQuery) -> StoreResult<Vec<(Millis, AuditEntryOwned)>>;
}

/// Which audit entries to read: every field narrows the answer; `limit` bounds it.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub registry: Option<String>,
    /// The actor (a user name, `cli`, `system`).
    pub actor: Option<String>,
    pub action: Option<AuditAction>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    /// Only entries older than the one with this id (the next page's cursor).
    pub before: Option<i64>,
    pub limit: u32,
}

impl AuditQuery {
    /// The `limit` most recent entries.
    pub fn recent(limit: u32) -> Self {
        AuditQuery {
            limit,
            ..AuditQuery::default()
        }
    }
}

/// An audit row as read back.
#[derive(Debug, Clone)]
pub struct AuditEntryOwned {
    /// Increases with every entry: a cursor for paging.
    pub id: i64,
    pub actor: Option<String>,
    pub action: String,
    pub registry: Option<String>,
    pub package: Option<String>,
    pub version: Option<String>,
    pub detail: Option<String>,
    pub client_addr: Option<String>,
}

/// A name (or a whole scope, `@scope/*`) claimed for a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub pattern: String,
    pub claimed_by: Option<String>,
    pub claimed_at: Millis,
}

/// A trust configuration: which CI jobs may publish `name` (see the
/// `trusted_publishing` migration). The store does not read `rule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRow {
    pub id: i64,
    pub registry_id: RegistryId,
    pub name: PackageName,
    pub kind: String,
    pub rule: String,
    pub created_by: String,
    pub created_at: Millis,
}

#[async_trait]
pub trait TrustStore: Send + Sync {
    async fn add_trusted_publisher(
        &self,
        registry: RegistryId,
        name: &PackageName,
        kind: &str,
        rule: &str,
        created_by: &str,
    ) -> StoreResult<TrustRow>;
    /// The package's configurations in `registry`, or in every registry (`None`).
    async fn trusted_publishers(&self, registry: Option<RegistryId>, name: &PackageName) -> StoreResult<Vec<TrustRow>>;
    /// False when there was no such configuration.
    async fn remove_trusted_publisher(&self, registry: RegistryId, name: &PackageName, id: i64) -> StoreResult<bool>;
}

/// A web app sign-in, found by the hash of its id.
#[derive(Debug, Clone)]
pub struct WebSession {
    pub user: User,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub last_seen: Millis,
}

#[derive(Debug, Clone)]
pub struct NewWebSession<'a> {
    pub id_hash: &'a str,
    pub user: UserId,
    pub expires_at: Millis,
    pub client_addr: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// Web app sessions (the cookie holds the id; the store only its SHA-256), and the
/// handoffs between one request and a later one that another replica may answer
/// (keyed by the SHA-256 of an id the client holds; they expire).
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Also forgets sessions that have expired.
    async fn create_session(&self, new: &NewWebSession<'_>) -> StoreResult<()>;
    /// The session, unless it has expired by `now`; `last_seen` moves to `now`.
    async fn session(&self, id_hash: &str, now: Millis) -> StoreResult<Option<WebSession>>;
    async fn end_session(&self, id_hash: &str) -> StoreResult<bool>;
    /// Signs a user out everywhere; how many sessions ended.
    async fn end_sessions_of(&self, user: UserId) -> StoreResult<u64>;
    /// Keeps `value` under `key` until `expires_at`, replacing what was there; also
    /// forgets handoffs that have expired.
    async fn put_handoff(&self, key: &str, value: &str, expires_at: Millis) -> StoreResult<()>;
    /// The value under `key`, unless it has expired by `now`.
    async fn handoff(&self, key: &str, now: Millis) -> StoreResult<Option<String>>;
    /// Removes and returns the value under `key`, unless it has expired by `now`: of
    /// several takers at once, exactly one gets it.
    async fn take_handoff(&self, key: &str, now: Millis) -> StoreResult<Option<String>>;
}

/// Names claimed for registries (see the `claims` migration for why).
#[async_trait]
pub trait ClaimStore: Send + Sync {
    /// Records a claim; claiming a pattern twice is success.
    async fn add_claim(&self, registry: RegistryId, pattern: &str, claimed_by: Option<&str>) -> StoreResult<()>;
    /// False when there was no such claim.
    async fn remove_claim(&self, registry: RegistryId, pattern: &str) -> StoreResult<bool>;
    async fn claims(&self, registry: RegistryId) -> StoreResult<Vec<Claim>>;
}

/// An advisory as stored. The store does not read `record` (the firewall's
/// normalized advisory, as JSON); it indexes it by id and by the packages it names.
#[derive(Debug, Clone)]
pub struct AdvisoryRow {
    pub id: String,
    pub modified: Millis,
    pub packages: Vec<String>,
    pub record: String,
}

/// What an advisory import changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub removed: u64,
    /// Records the reader skipped (bad ranges and the like), as it reported.
    pub skipped: u64,
    /// Packages whose advisories changed: their decisions must be made again.
    pub packages: Vec<String>,
}

/// One import, as recorded.
#[derive(Debug, Clone)]
pub struct AdvisoryImport {
    pub imported_at: Millis,
    pub source: String,
    pub replaced: bool,
    pub summary: ImportSummary,
}

#[derive(Debug, Clone, Default)]
pub struct AdvisoryStats {
    pub advisories: u64,
    pub packages: u64,
    pub newest_modified: Option<Millis>,
    pub last_import: Option<AdvisoryImport>,
}

/// The advisory database (one for every registry).
#[async_trait]
pub trait AdvisoryStore: Send + Sync {
    /// In one transaction: adds and updates advisories by id (a newer `modified`
    /// wins), or with `replace` makes the database exactly `rows`; records the import
    /// and logs an `Advisories` change. `skipped` is only recorded.
    async fn import_advisories(
        &self,
        rows: &[AdvisoryRow],
        source: &str,
        replace: bool,
        skipped: u64,
    ) -> StoreResult<ImportSummary>;
    /// The records of the advisories naming `package`.
    async fn advisories_for(&self, package: &str) -> StoreResult<Vec<String>>;
    async fn advisory_stats(&self) -> StoreResult<AdvisoryStats>;
}

/// A registry's policy document, as set.
#[derive(Debug, Clone)]
pub struct PolicyRow {
    pub document: String,
    pub updated_at: Millis,
    pub updated_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionRow {
    pub id: i64,
    pub package: String,
    pub range: String,
    pub rule: String,
    pub expires_at: Millis,
    pub reason: String,
    pub created_by: Option<String>,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct NewException {
    pub package: String,
    pub range: String,
    pub rule: String,
    pub expires_at: Millis,
    pub reason: String,
    pub created_by: Option<String>,
}

/// A registry admin's verdict on a quarantined version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRow {
    pub package: String,
    pub version: String,
    pub approved: bool,
    pub reason: Option<String>,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Millis,
}

/// The latest decision for a version (see the `decisions` migration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRow {
    pub package: String,
    pub version: String,
    pub verdict: String,
    /// What audit mode would have done.
    pub would: String,
    pub rule: Option<String>,
    pub reason: String,
    /// Every finding, as JSON.
    pub findings: String,
    pub basis: String,
    /// What the tarball showed (JSON), when it was inspected but not stored.
    pub facts: Option<String>,
    pub decided_at: Millis,
}

/// Which decisions to list; every field narrows the answer.
#[derive(Debug, Clone, Default)]
pub struct DecisionQuery {
    pub package: Option<String>,
    /// Verdicts or would-be verdicts (audit mode) to list; empty: any but `allow`.
    pub verdicts: Vec<String>,
    /// Only quarantined versions nobody has reviewed (the queue).
    pub unreviewed: bool,
    pub limit: u32,
}

/// Policies, exceptions, reviews and decisions, per registry.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// `None`: the registry has the default policy.
    async fn policy(&self, registry: RegistryId) -> StoreResult<Option<PolicyRow>>;
    /// Sets the document (`None` goes back to the default); logs a `Policy` change.
    async fn set_policy(&self, registry: RegistryId, document: Option<&str>, by: Option<&str>) -> StoreResult<()>;
    async fn exceptions(&self, registry: RegistryId, package: Option<&str>) -> StoreResult<Vec<ExceptionRow>>;
    /// Logs a change of the package.
    async fn add_exception(&self, registry: RegistryId, new: &NewException) -> StoreResult<ExceptionRow>;
    /// `None` when there was no such exception; logs a change of its package.
    async fn remove_exception(&self, registry: RegistryId, id: i64) -> StoreResult<Option<ExceptionRow>>;
    async fn reviews(&self, registry: RegistryId, package: &str) -> StoreResult<Vec<ReviewRow>>;
    /// Records (or replaces) a review; logs a change of the package.
    async fn set_review(&self, registry: RegistryId, review: &ReviewRow) -> StoreResult<()>;
    /// Stores each version's latest decision; for those whose verdict, rule or reason
    /// changed, appends a `policy.decision` audit entry in the same transaction and
    /// returns them.
    async fn record_decisions(&self, registry: &Registry, rows: &[DecisionRow]) -> StoreResult<Vec<DecisionRow>>;
    /// Newest first.
    async fn decisions(&self, registry: RegistryId, query: &DecisionQuery) -> StoreResult<Vec<DecisionRow>>;
}

/// A database connection pool's use, for `/-/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    pub name: &'static str,
    /// Connections open now, and of those, idle.
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

pub trait PoolStats: Send + Sync {
    fn pool_use(&self) -> Vec<PoolUse>;
}

/// Row-for-row access to the tables, for moving a whole install between stacks
/// (`transfer`); nothing else uses it. Table and column names come from the schema.
#[async_trait]
pub trait TableCopy: Send + Sync {
    /// The schema's tables (not the migrator's own).
    async fn tables(&self) -> StoreResult<Vec<String>>;
    /// `table`'s columns in order, with their kinds.
    async fn columns(&self, table: &str) -> StoreResult<Vec<transfer::Column>>;
    /// Every row of `table`, the `columns` in that order, as they are read.
    fn rows(
        &self,
        table: &str,
        columns: &[transfer::Column],
    ) -> futures_util::stream::BoxStream<'static, StoreResult<Vec<transfer::Cell>>>;
    /// Inserts `rows`, skipping those a unique key says are there; how many were new.
    async fn insert_rows(
        &self,
        table: &str,
        columns: &[transfer::Column],
        rows: &[Vec<transfer::Cell>],
    ) -> StoreResult<u64>;
    /// Moves the id sequences past the rows copied in (SQLite's follow by themselves).
    async fn after_copy(&self) -> StoreResult<()> {
        Ok(())
    }
}

/// The whole metadata store, as the rest of the server sees it.
pub trait MetaStore:
    RegistryStore
    + UserStore
    + TokenStore
    + PackageStore
    + UpstreamStore
    + ClaimStore
    + TrustStore
    + SessionStore
    + ChangeLog
    + AuditLog
    + BlobJournalStore
    + AdvisoryStore
    + PolicyStore
    + PoolStats
    + TableCopy
{
}
impl<
    T: RegistryStore
        + UserStore
        + TokenStore
        + PackageStore
        + UpstreamStore
        + ClaimStore
        + TrustStore
        + SessionStore
        + ChangeLog
        + AuditLog
        + BlobJournalStore
        + AdvisoryStore
        + PolicyStore
        + PoolStats
        + TableCopy,
> MetaStore for T
{
}

pub type Meta = Arc<dyn MetaStore>;
