//! Shared by the store tests.

pub mod postgres;
pub mod s3;

use bytes::Bytes;
use sha2::{Digest as _, Sha512};

use super::blobs::BlobKey;
use super::{AuditEntry, BlobRef, NewVersion, PackageId, RegistryId};
use gatehouse_npm::name::PackageName;

/// `version` of `name` as a publish would record it, its blob journaled.
pub fn journaled_version(
    registry: RegistryId,
    name: &str,
    version: &str,
    tarball: &Bytes,
    known_package: Option<PackageId>,
) -> NewVersion {
    let key = BlobKey::from_bytes(Sha512::digest(tarball).into());
    NewVersion {
        registry_id: registry,
        name: PackageName::parse(name).expect("package name"),
        version: version.into(),
        release_key: version.into(),
        manifest: format!(r#"{{"name":"{name}","version":"{version}"}}"#),
        blob: BlobRef {
            sha512_hex: key.to_hex(),
            size: tarball.len() as u64,
        },
        publisher: None,
        publisher_name: None,
        deprecated: None,
        source: "publish".into(),
        facts: None,
        install_scripts: false,
        attested: false,
        attestations: None,
        tags: vec!["latest".into()],
        internal_if_new: false,
        published_at: None,
        claim_latest: true,
        audit: AuditEntry::new(crate::AuditAction::VersionPublish),
        known_package,
        journal: Some(tarball.clone()),
    }
}
