//! What every backend must do, as one suite run against each (garage's style: a
//! plain function per store kind, called once per engine). The SQLite store runs it
//! on a file and in memory, the PostgreSQL store on a real server (see
//! `test_support::postgres`).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use gatehouse_npm::name::PackageName;
use sha2::{Digest as _, Sha512};

use crate::blobs::{BlobError, BlobKey, BlobStore, Collected};
use crate::registry::{RegistryName, Role};
use crate::test_support::journaled_version;
use crate::{
    AdvisoryRow, AuditAction, AuditEntry, AuditEntryOwned, AuditQuery, ChangeKind, Conflict, DecisionQuery,
    DecisionRow, Meta, NewException, NewToken, NewUpstream, ReviewRow, StoreError, now_millis,
};

fn name(raw: &str) -> gatehouse_npm::name::PackageName {
    gatehouse_npm::name::PackageName::parse(raw).expect("package name")
}

/// The metadata store's contract: uniqueness decides, writes are visible to reads,
/// writes are in the change log and refusals change nothing.
pub async fn meta_store(meta: Meta) {
    // `transfer` knows every table of the schema, and each is there.
    let mut tables = meta.tables().await.expect("tables");
    tables.sort();
    let mut known: Vec<String> = crate::transfer::TABLES
        .iter()
        .chain(crate::transfer::NOT_COPIED)
        .map(|t| t.to_string())
        .collect();
    known.sort();
    assert_eq!(
        tables, known,
        "transfer::TABLES and NOT_COPIED name the schema's tables"
    );
    // Registries and roles.
    let registry_name = RegistryName::parse("conformance").expect("registry name");
    let registry = meta.create_registry(&registry_name, false).await.expect("registry");
    assert!(matches!(
        meta.create_registry(&registry_name, true).await,
        Err(StoreError::Conflict(Conflict::RegistryExists))
    ));
    assert!(
        !meta
            .registry(&registry_name)
            .await
            .expect("read")
            .expect("there")
            .public_read
    );
    meta.set_registry_public(registry.id, true).await.expect("public");
    assert!(
        meta.registry(&registry_name)
            .await
            .expect("read")
            .expect("there")
            .public_read
    );

    // Users and tokens.
    let alice = meta.create_user("alice", None, "hash", false).await.expect("user");
    assert!(matches!(
        meta.create_user("alice", None, "hash", true).await,
        Err(StoreError::Conflict(Conflict::UserExists))
    ));
    meta.set_password_hash(alice.id, "new hash").await.expect("password");
    let seen = meta.last_change().await.expect("seq");
    meta.set_user_disabled(alice.id, true).await.expect("disable");
    assert!(meta.user("alice").await.expect("read").expect("there").disabled);
    meta.set_user_disabled(alice.id, false).await.expect("enable");
    meta.set_user_admin(alice.id, true).await.expect("admin");
    assert!(meta.user("alice").await.expect("read").expect("there").is_admin);
    // Failed logins count in a window, concurrently too, and an unlock clears them.
    let now = now_millis();
    let (a, b) = tokio::join!(
        meta.count_login_failure("user:alice", now, now + 60_000),
        meta.count_login_failure("user:alice", now, now + 60_000)
    );
    let mut counts = [a.expect("count"), b.expect("count")];
    counts.sort_unstable();
    assert_eq!(counts, [1, 2]);
    assert_eq!(meta.login_failures("user:alice", now).await.expect("read"), 2);
    assert_eq!(meta.login_failures("addr:127.0.0.1", now).await.expect("read"), 0);
    assert_eq!(
        meta.login_failures("user:alice", now + 60_000).await.expect("read"),
        0,
        "window over"
    );
    assert_eq!(
        meta.count_login_failure("user:alice", now + 60_000, now + 120_000)
            .await
            .expect("count"),
        1,
        "a new window"
    );
    meta.clear_login_failures("alice").await.expect("unlock");
    assert_eq!(meta.login_failures("user:alice", now).await.expect("read"), 0);
    let changes = meta.changes_since(seen).await.expect("changes");
    assert!(changes.iter().any(|c| c.kind == ChangeKind::Credentials));
    assert!(
        changes
            .iter()
            .any(|c| c.kind == ChangeKind::LoginUnlocked("alice".into()))
    );
    let bob = meta.create_user("bob", None, "hash", false).await.expect("user");
    meta.delete_user(bob.id).await.expect("delete");
    assert!(meta.user("bob").await.expect("read").is_none());
    assert!(matches!(meta.delete_user(bob.id).await, Err(StoreError::NotFound)));
    assert_eq!(
        meta.user("alice").await.expect("read").expect("there").password_hash,
        "new hash"
    );
    meta.set_member_role(registry.id, alice.id, Some(Role::Publish))
        .await
        .expect("grant");
    assert_eq!(
        meta.member_role(registry.id, alice.id).await.expect("role"),
        Some(Role::Publish)
    );
    assert_eq!(
        meta.grants().await.expect("grants"),
        vec![crate::Grant {
            registry: registry.name.clone(),
            user: "alice".into(),
            role: Role::Publish
        }]
    );
    meta.insert_token(&NewToken {
        key: "0123456789abcdef0123456789abcdef".into(),
        secret_hash: "secret-hash".into(),
        display: "gth_abc…".into(),
        user_id: alice.id,
        name: Some("ci".into()),
        readonly: true,
        cidr_whitelist: vec!["10.0.0.0/8".into()],
        registries: vec!["conformance".into()],
        packages: vec!["@acme/*".into()],
        expires_at: None,
        published_by: Some("{\"kind\":\"github\"}".into()),
    })
    .await
    .expect("token");
    let token = meta
        .token_by_secret_hash("secret-hash")
        .await
        .expect("read")
        .expect("there");
    assert_eq!((token.user.name.as_str(), token.readonly), ("alice", true));
    assert_eq!(token.packages, ["@acme/*"]);
    assert_eq!(token.published_by.as_deref(), Some("{\"kind\":\"github\"}"));

    // Trust configurations, for names with or without a package.
    let lib = PackageName::parse("@acme/lib").expect("name");
    let added = meta
        .add_trusted_publisher(registry.id, &lib, "github", "{}", "alice")
        .await
        .expect("trust");
    let other = meta
        .create_registry(&RegistryName::parse("conformance-trust").expect("name"), false)
        .await
        .expect("registry");
    meta.add_trusted_publisher(other.id, &lib, "gitlab", "{}", "alice")
        .await
        .expect("trust");
    assert_eq!(
        meta.trusted_publishers(Some(registry.id), &lib).await.expect("list"),
        std::slice::from_ref(&added)
    );
    assert_eq!(meta.trusted_publishers(None, &lib).await.expect("all").len(), 2);
    assert!(
        !meta
            .remove_trusted_publisher(other.id, &lib, added.id)
            .await
            .expect("not there")
    );
    assert!(
        meta.remove_trusted_publisher(registry.id, &lib, added.id)
            .await
            .expect("remove")
    );
    assert!(
        meta.trusted_publishers(Some(registry.id), &lib)
            .await
            .expect("list")
            .is_empty()
    );
    let seen = meta.last_change().await.expect("seq");
    assert!(meta.revoke_token(Some(alice.id), &token.key, 1).await.expect("revoke"));
    assert!(
        !meta.revoke_token(Some(alice.id), &token.key, 2).await.expect("again"),
        "revoked once"
    );
    let changes = meta.changes_since(seen).await.expect("changes");
    assert!(changes.iter().any(|c| c.kind == ChangeKind::Credentials && c.own));

    // Versions: one row each, unique per release, names unique ignoring case.
    let tarball = Bytes::from_static(b"first tarball");
    let first = journaled_version(registry.id, "lib", "1.0.0", &tarball, None);
    let inserted = meta.insert_version(&first).await.expect("first version");
    assert!(inserted.created_package);
    let again = journaled_version(registry.id, "lib", "1.0.0", &Bytes::from_static(b"other"), None);
    assert!(matches!(
        meta.insert_version(&again).await,
        Err(StoreError::Conflict(Conflict::VersionExists))
    ));
    let folded = journaled_version(registry.id, "Lib", "2.0.0", &tarball, None);
    assert!(matches!(
        meta.insert_version(&folded).await,
        Err(StoreError::Conflict(Conflict::NameTakenIgnoringCase))
    ));
    let mut second = journaled_version(registry.id, "lib", "1.1.0", &tarball, Some(inserted.package_id));
    second.install_scripts = true;
    second.attested = true;
    second.attestations = Some(r#"[{"predicateType":"https://slsa.dev/provenance/v1","bundle":{}}]"#.into());
    meta.insert_version(&second).await.expect("second version");
    assert_eq!(
        meta.attestations(registry.id, &name("lib"), "1.1.0")
            .await
            .expect("read")
            .as_deref(),
        second.attestations.as_deref()
    );
    assert_eq!(
        meta.attestations(registry.id, &name("lib"), "1.0.0")
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        meta.attestations(registry.id, &name("lib"), "9.9.9")
            .await
            .expect("read"),
        None
    );
    let mut history = meta.version_history(registry.id, &name("lib")).await.expect("history");
    history.sort_by(|a, b| a.version.cmp(&b.version));
    let facts: Vec<(bool, bool)> = history.iter().map(|h| (h.install_scripts, h.attested)).collect();
    assert_eq!(facts, [(false, false), (true, true)]);
    let record = meta
        .package(registry.id, &name("lib"))
        .await
        .expect("read")
        .expect("there");
    let versions: Vec<&str> = record.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(
        meta.release_taken(registry.id, &name("lib"), "1.0.0")
            .await
            .expect("taken")
    );
    assert!(
        !meta
            .release_taken(registry.id, &name("lib"), "3.0.0")
            .await
            .expect("free")
    );
    assert_eq!(
        meta.journaled_keys().await.expect("journal").len(),
        2,
        "refused versions leave no journal row"
    );

    // Tags, deprecation, unpublishing.
    meta.set_dist_tag(record.id, "beta", "1.1.0").await.expect("tag");
    assert!(meta.remove_dist_tag(record.id, "beta").await.expect("untag"));
    assert!(!meta.remove_dist_tag(record.id, "beta").await.expect("untag again"));
    meta.set_deprecations(record.id, &[("1.0.0".into(), Some("use 1.1".into()))])
        .await
        .expect("deprecate");
    let stale_rev = Some(record.rev - 1);
    let tags = BTreeMap::from([("latest".to_owned(), "1.1.0".to_owned())]);
    assert!(matches!(
        meta.unpublish_versions(record.id, stale_rev, &["1.0.0".into()], &tags)
            .await,
        Err(StoreError::Stale)
    ));
    let record = meta
        .package(registry.id, &name("lib"))
        .await
        .expect("read")
        .expect("there");
    meta.unpublish_versions(record.id, Some(record.rev), &["1.0.0".into()], &tags)
        .await
        .expect("unpublish");
    let record = meta
        .package(registry.id, &name("lib"))
        .await
        .expect("read")
        .expect("there");
    let live: Vec<&str> = record.live_versions().map(|v| v.version.as_str()).collect();
    assert_eq!(live, ["1.1.0"]);
    assert!(
        meta.release_taken(registry.id, &name("lib"), "1.0.0")
            .await
            .expect("taken"),
        "an unpublished number stays taken"
    );

    // Upstreams.
    let upstream = |spec: &str| NewUpstream {
        spec: spec.into(),
        ..NewUpstream::default()
    };
    meta.add_upstream(registry.id, &upstream("npmjs"))
        .await
        .expect("upstream");
    assert!(matches!(
        meta.add_upstream(registry.id, &upstream("npmjs")).await,
        Err(StoreError::Conflict(Conflict::UpstreamExists))
    ));
    meta.set_upstreams(registry.id, &[upstream("https://a.test/"), upstream("npmjs")])
        .await
        .expect("set");
    let specs: Vec<String> = meta
        .upstreams(registry.id)
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.spec)
        .collect();
    assert_eq!(specs, ["https://a.test/", "npmjs"]);
    let first = meta.upstreams(registry.id).await.expect("list")[0].id;
    let copy = crate::StoredPackument {
        body: b"{}".to_vec(),
        etag: Some("\"e\"".into()),
        last_modified: None,
        fetched_at: 1,
    };
    meta.store_packument(first, &name("lodash"), &copy)
        .await
        .expect("store copy");
    assert!(
        meta.stored_packument(first, &name("lodash"))
            .await
            .expect("read")
            .is_some()
    );
    assert_eq!(
        meta.purge_packuments(registry.id, &name("lodash"))
            .await
            .expect("purge"),
        1
    );
    assert!(
        meta.stored_packument(first, &name("lodash"))
            .await
            .expect("read")
            .is_none()
    );
    assert!(meta.remove_upstream(registry.id, "npmjs").await.expect("remove"));

    // Claims.
    meta.add_claim(registry.id, "@acme/*", Some("admin"))
        .await
        .expect("claim");
    meta.add_claim(registry.id, "@acme/*", Some("admin"))
        .await
        .expect("claiming twice is fine");
    meta.add_claim(registry.id, "left-pad", None).await.expect("claim");
    let claims: Vec<String> = meta
        .claims(registry.id)
        .await
        .expect("claims")
        .into_iter()
        .map(|c| c.pattern)
        .collect();
    assert_eq!(claims, ["@acme/*", "left-pad"]);
    assert!(meta.remove_claim(registry.id, "left-pad").await.expect("unclaim"));
    assert!(!meta.remove_claim(registry.id, "left-pad").await.expect("unclaim again"));

    // Audit.
    meta.append_audit(&AuditEntry {
        actor: Some("alice".into()),
        registry: Some("conformance".into()),
        ..AuditEntry::new(AuditAction::DistTagSet)
    })
    .await
    .expect("audit");
    let recent = meta.audit_entries(&AuditQuery::recent(1)).await.expect("read audit");
    // (Deleting the registry comes last: it takes its packages with it.)
    assert_eq!(recent[0].1.action, "dist-tag.set");
    let filtered = AuditQuery {
        registry: Some("conformance".into()),
        actor: Some("alice".into()),
        action: Some(AuditAction::DistTagSet),
        since: Some(0),
        until: Some(now_millis() + 1000),
        before: None,
        limit: 10,
    };
    assert_eq!(meta.audit_entries(&filtered).await.expect("filtered").len(), 1);
    let none = AuditQuery {
        action: Some(AuditAction::UserDelete),
        ..filtered
    };
    assert!(meta.audit_entries(&none).await.expect("filtered").is_empty());
    // Paging: the cursor continues exactly after the last entry of the page before.
    for _ in 0..4 {
        meta.append_audit(&AuditEntry::new(AuditAction::UserUnlock))
            .await
            .expect("audit");
    }
    let all = meta.audit_entries(&AuditQuery::recent(1000)).await.expect("all");
    let first = meta.audit_entries(&AuditQuery::recent(2)).await.expect("page 1");
    let second = meta
        .audit_entries(&AuditQuery {
            before: Some(first[1].1.id),
            ..AuditQuery::recent(2)
        })
        .await
        .expect("page 2");
    let ids = |page: &[(crate::Millis, AuditEntryOwned)]| page.iter().map(|(_, e)| e.id).collect::<Vec<_>>();
    assert_eq!([ids(&first), ids(&second)].concat(), ids(&all[..4]));

    // Clone and rename: a copy holds the same packages; names follow a rename.
    let copy_name = RegistryName::parse("conformance-copy").expect("name");
    let copy = meta.clone_registry(registry.id, &copy_name).await.expect("clone");
    let copied = meta
        .package(copy.id, &name("lib"))
        .await
        .expect("read")
        .expect("copied");
    assert_eq!(copied.live_versions().count(), 1);
    assert_eq!(copied.dist_tags.get("latest").map(String::as_str), Some("1.1.0"));
    assert!(matches!(
        meta.clone_registry(registry.id, &copy_name).await,
        Err(StoreError::Conflict(Conflict::RegistryExists))
    ));
    let renamed = RegistryName::parse("conformance-renamed").expect("name");
    assert!(matches!(
        meta.rename_registry(copy.id, &copy_name, &registry_name).await,
        Err(StoreError::Conflict(Conflict::RegistryExists))
    ));
    meta.rename_registry(copy.id, &copy_name, &renamed)
        .await
        .expect("rename");
    assert!(meta.registry(&copy_name).await.expect("read").is_none());
    assert_eq!(meta.registry(&renamed).await.expect("read").expect("there").id, copy.id);
    meta.delete_registry(copy.id).await.expect("delete copy");
    assert!(
        meta.package(registry.id, &name("lib")).await.expect("read").is_some(),
        "the original keeps its own"
    );

    handoffs(&meta).await;

    meta.delete_registry(registry.id).await.expect("delete registry");
    assert!(meta.registry(&registry_name).await.expect("read").is_none());
    assert!(meta.package(registry.id, &name("lib")).await.expect("read").is_none());
    assert!(matches!(
        meta.delete_registry(registry.id).await,
        Err(StoreError::NotFound)
    ));
}

/// Handoffs: read until taken, replaced by a put, taken by exactly one of several
/// takers, and gone once expired.
async fn handoffs(meta: &Meta) {
    let now = now_millis();
    meta.put_handoff("k1", "pending", now + 60_000).await.expect("put");
    assert_eq!(meta.handoff("k1", now).await.expect("read").as_deref(), Some("pending"));
    meta.put_handoff("k1", "approved", now + 60_000).await.expect("replace");
    let (first, second) = tokio::join!(meta.take_handoff("k1", now), meta.take_handoff("k1", now));
    let taken: Vec<String> = [first, second].into_iter().filter_map(|t| t.expect("take")).collect();
    assert_eq!(taken, vec!["approved".to_owned()], "one taker gets it");
    assert_eq!(meta.handoff("k1", now).await.expect("read"), None);
    meta.put_handoff("k2", "old", now + 1_000).await.expect("put");
    assert_eq!(meta.handoff("k2", now + 1_000).await.expect("read"), None, "expired");
    assert_eq!(meta.take_handoff("k2", now + 1_000).await.expect("take"), None);
}

/// The firewall's tables: a policy per registry, one advisory database where the
/// newer record wins and an import is all or nothing, exceptions and reviews that
/// are in the change log, and decisions audited only when their outcome changes.
pub async fn firewall_store(meta: Meta) {
    let registry_name = RegistryName::parse("firewall").expect("registry name");
    let registry = meta.create_registry(&registry_name, true).await.expect("registry");

    assert!(
        meta.policy(registry.id).await.expect("read").is_none(),
        "the default policy has no row"
    );
    meta.set_policy(registry.id, Some("freeze = true\n"), Some("admin"))
        .await
        .expect("set");
    let policy = meta.policy(registry.id).await.expect("read").expect("set");
    assert_eq!(
        (policy.document.as_str(), policy.updated_by.as_deref()),
        ("freeze = true\n", Some("admin"))
    );
    meta.set_policy(registry.id, None, None).await.expect("back to default");
    assert!(meta.policy(registry.id).await.expect("read").is_none());

    let advisory = |id: &str, modified, packages: &[&str]| AdvisoryRow {
        id: id.into(),
        modified,
        packages: packages.iter().map(|p| (*p).to_owned()).collect(),
        record: format!("{{\"id\":\"{id}\",\"modified\":{modified}}}"),
    };
    let seen = meta.last_change().await.expect("seq");
    let first = meta
        .import_advisories(
            &[advisory("GHSA-1", 10, &["lodash"]), advisory("GHSA-2", 10, &["a", "b"])],
            "one.json",
            false,
            3,
        )
        .await
        .expect("import");
    assert_eq!((first.added, first.updated, first.skipped), (2, 0, 3));
    assert_eq!(first.packages, ["a", "b", "lodash"]);
    assert!(
        meta.changes_since(seen)
            .await
            .expect("changes")
            .iter()
            .any(|c| c.kind == ChangeKind::Advisories),
        "other processes learn of an import"
    );
    let second = meta
        .import_advisories(
            &[advisory("GHSA-1", 5, &["other"]), advisory("GHSA-2", 20, &["b"])],
            "two.json",
            false,
            0,
        )
        .await
        .expect("import");
    assert_eq!(
        (second.added, second.updated, second.unchanged),
        (0, 1, 1),
        "an older record loses"
    );
    assert_eq!(
        second.packages,
        ["a", "b"],
        "the package GHSA-2 no longer names is touched too"
    );
    assert_eq!(meta.advisories_for("lodash").await.expect("read").len(), 1);
    assert!(meta.advisories_for("a").await.expect("read").is_empty());
    let replaced = meta
        .import_advisories(&[advisory("GHSA-3", 1, &["c"])], "all.zip", true, 0)
        .await
        .expect("replace");
    assert_eq!((replaced.added, replaced.removed), (1, 2));
    assert!(meta.advisories_for("lodash").await.expect("read").is_empty());
    let stats = meta.advisory_stats().await.expect("stats");
    assert_eq!(
        (stats.advisories, stats.packages, stats.newest_modified),
        (1, 1, Some(1))
    );
    let last = stats.last_import.expect("recorded");
    assert_eq!(
        (last.source.as_str(), last.replaced, last.summary.removed),
        ("all.zip", true, 2)
    );

    let seen = meta.last_change().await.expect("seq");
    let exception = meta
        .add_exception(
            registry.id,
            &NewException {
                package: "lodash".into(),
                range: "4.17.20".into(),
                rule: "vulnerabilities".into(),
                expires_at: now_millis() + 60_000,
                reason: "patched in our fork".into(),
                created_by: Some("admin".into()),
            },
        )
        .await
        .expect("add");
    assert_eq!(
        meta.exceptions(registry.id, Some("lodash")).await.expect("list"),
        std::slice::from_ref(&exception)
    );
    assert!(
        meta.exceptions(registry.id, Some("other"))
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        meta.changes_since(seen)
            .await
            .expect("changes")
            .iter()
            .any(|c| c.kind == ChangeKind::Package(name("lodash")))
    );
    assert_eq!(
        meta.remove_exception(registry.id, exception.id).await.expect("remove"),
        Some(exception.clone())
    );
    assert_eq!(
        meta.remove_exception(registry.id, exception.id).await.expect("remove"),
        None
    );

    let mut review = ReviewRow {
        package: "pkg".into(),
        version: "1.0.0".into(),
        approved: true,
        reason: None,
        reviewed_by: Some("admin".into()),
        reviewed_at: now_millis(),
    };
    meta.set_review(registry.id, &review).await.expect("review");
    review.approved = false;
    review.reason = Some("it phones home".into());
    meta.set_review(registry.id, &review).await.expect("review again");
    assert_eq!(meta.reviews(registry.id, "pkg").await.expect("read"), [review]);

    let decision = |package: &str, version: &str, verdict: &str, basis: &str| DecisionRow {
        package: package.into(),
        version: version.into(),
        verdict: verdict.into(),
        would: verdict.into(),
        rule: (verdict != "allow").then(|| "install_scripts".to_owned()),
        reason: "runs install".into(),
        findings: "[]".into(),
        basis: basis.into(),
        facts: None,
        decided_at: now_millis(),
    };
    let changed = meta
        .record_decisions(
            &registry,
            &[
                decision("pkg", "1.0.0", "quarantine", "a"),
                decision("pkg", "2.0.0", "quarantine", "a"),
            ],
        )
        .await
        .expect("record");
    assert_eq!(changed.len(), 2);
    let again = meta
        .record_decisions(&registry, &[decision("pkg", "2.0.0", "quarantine", "b")])
        .await
        .expect("record");
    assert!(again.is_empty(), "a new basis with the same outcome is no new decision");
    let queue = meta
        .decisions(
            registry.id,
            &DecisionQuery {
                unreviewed: true,
                limit: 10,
                ..DecisionQuery::default()
            },
        )
        .await
        .expect("queue");
    assert_eq!(
        queue.iter().map(|d| d.version.as_str()).collect::<Vec<_>>(),
        ["2.0.0"],
        "1.0.0 was reviewed"
    );
    assert_eq!(queue[0].basis, "b");
    let audited = meta
        .audit_entries(&AuditQuery {
            action: Some(AuditAction::PolicyDecision),
            ..AuditQuery::recent(10)
        })
        .await
        .expect("audit");
    assert_eq!(audited.len(), 2, "one entry per changed decision");
    meta.record_decisions(&registry, &[decision("pkg", "2.0.0", "allow", "c")])
        .await
        .expect("record");
    let listed = meta
        .decisions(
            registry.id,
            &DecisionQuery {
                limit: 10,
                ..DecisionQuery::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(listed.len(), 1, "allowed versions are not listed by default");

    meta.delete_registry(registry.id).await.expect("delete");
    assert!(meta.exceptions(registry.id, None).await.expect("list").is_empty());
}

/// The blob backend's contract: stored by digest only, verified, listed, and a
/// staged blob dropped without commit leaves nothing.
pub async fn blob_store(store: Arc<dyn BlobStore>) {
    let bytes = Bytes::from_static(b"a tarball's bytes");
    let key = BlobKey::from_bytes(Sha512::digest(&bytes).into());
    assert!(store.open(&key).await.expect("open").is_none());
    store.put(&key, bytes.clone()).await.expect("put");
    store
        .put(&key, bytes.clone())
        .await
        .expect("an existing blob is success");
    let stream = store.open(&key).await.expect("open").expect("stored");
    assert_eq!((stream.len, stream.etag.clone()), (bytes.len() as u64, key.etag()));
    assert_eq!(stream.into_bytes().await.expect("read"), bytes);
    assert_eq!(store.list().await.expect("list"), std::slice::from_ref(&key));
    // Parts of it, for range requests ("a tarball's bytes": 17 bytes).
    assert_eq!(store.size(&key).await.expect("size"), Some(bytes.len() as u64));
    let part = store.open_part(&key, 2..9).await.expect("part").expect("stored");
    assert_eq!((part.len, part.etag.clone()), (7, key.etag()));
    assert_eq!(part.into_bytes().await.expect("read"), bytes.slice(2..9));
    let tail = store.open_part(&key, 16..17).await.expect("part").expect("stored");
    assert_eq!(tail.into_bytes().await.expect("read"), bytes.slice(16..));

    let other = BlobKey::from_bytes(Sha512::digest(b"other").into());
    assert_eq!(store.size(&other).await.expect("size"), None);
    assert!(store.open_part(&other, 0..1).await.expect("part").is_none());
    assert!(matches!(
        store.put(&other, Bytes::from_static(b"not other")).await,
        Err(BlobError::DigestMismatch)
    ));
    assert!(!store.contains(&other).await.expect("contains"));

    let streamed = Bytes::from_static(b"streamed in pieces");
    let streamed_key = BlobKey::from_bytes(Sha512::digest(&streamed).into());
    let mut staged = store.stage().await.expect("stage");
    staged.write(&streamed[..8]).await.expect("write");
    staged.write(&streamed[8..]).await.expect("write");
    staged.commit(&streamed_key).await.expect("commit");
    assert!(store.contains(&streamed_key).await.expect("contains"));
    let mut wrong = store.stage().await.expect("stage");
    wrong.write(b"not the digest").await.expect("write");
    assert!(matches!(wrong.commit(&other).await, Err(BlobError::DigestMismatch)));
    assert!(!store.contains(&other).await.expect("contains"));
    assert_eq!(store.list().await.expect("list").len(), 2);

    // Garbage collection keeps what is young, removes what isn't, once.
    let hour = std::time::Duration::from_secs(3600);
    assert_eq!(store.collect(&key, hour).await.expect("collect"), Collected::Young);
    assert!(store.contains(&key).await.expect("contains"), "a young blob stays");
    assert_eq!(
        store.collect(&key, std::time::Duration::ZERO).await.expect("collect"),
        Collected::Removed
    );
    assert!(!store.contains(&key).await.expect("contains"));
    assert_eq!(
        store.collect(&key, std::time::Duration::ZERO).await.expect("collect"),
        Collected::Missing
    );
    assert_eq!(store.list().await.expect("list"), [streamed_key]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Durability;
    use crate::blobs::FsBlobStore;
    use crate::blobs::memory::MemoryBlobStore;
    use crate::sqlite::SqliteStore;

    #[tokio::test]
    async fn sqlite_on_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("db.sqlite"), Durability::Full)
            .await
            .expect("open");
        let store: Meta = Arc::new(store);
        meta_store(store.clone()).await;
        firewall_store(store).await;
    }

    #[tokio::test]
    async fn sqlite_in_memory() {
        let store: Meta = Arc::new(SqliteStore::open_in_memory().await.expect("open"));
        meta_store(store.clone()).await;
        firewall_store(store).await;
    }

    #[tokio::test]
    async fn postgres() {
        let Some(url) = crate::test_support::postgres::database().await else {
            return;
        };
        let store = crate::postgres::PostgresStore::connect(&url, 10)
            .await
            .expect("connect");
        let store: Meta = Arc::new(store);
        meta_store(store.clone()).await;
        firewall_store(store).await;
    }

    #[tokio::test]
    async fn files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path(), Durability::Full).await.expect("open");
        blob_store(Arc::new(store)).await;
    }

    #[tokio::test]
    async fn memory() {
        blob_store(Arc::new(MemoryBlobStore::default())).await;
    }

    /// Downloads of small blob files come from memory once read (no trip to the
    /// blocking pool); large ones stream from the file every time; checks read the file.
    #[tokio::test]
    async fn file_downloads_keep_small_blobs_in_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path(), Durability::Full).await.expect("open");
        let journal = Arc::new(crate::sqlite::SqliteStore::open_in_memory().await.expect("journal"));
        let blobs = crate::blobs::Blobs::idle(Arc::new(store), journal);
        let small = Bytes::from_static(b"asked for by every CI job");
        let large = Bytes::from(vec![7u8; crate::blobs::DOWNLOAD_CACHE_MAX_BLOB as usize + 1]);
        for bytes in [&small, &large] {
            let key = key_of(bytes);
            blobs.store().put(&key, bytes.clone()).await.expect("put");
            let served = blobs.serve(&key).await.expect("serve").expect("stored");
            assert_eq!(&served.into_bytes().await.expect("read"), bytes);
            let hex = key.to_hex();
            std::fs::remove_file(dir.path().join(format!("sha512/{}/{}/{hex}", &hex[..2], &hex[2..4])))
                .expect("remove the file");
            let again = blobs.serve(&key).await.expect("serve");
            if bytes.len() as u64 <= crate::blobs::DOWNLOAD_CACHE_MAX_BLOB {
                let again = again.expect("kept in memory");
                assert_eq!(&again.into_bytes().await.expect("read"), bytes);
            } else {
                assert!(again.is_none(), "a large blob is read from its file every time");
            }
            assert!(
                blobs.open(&key).await.expect("open").is_none(),
                "a check reads the file"
            );
        }
    }

    use crate::blobs::{S3BlobStore, StagedBlob};
    use crate::test_support::s3;

    fn key_of(bytes: &[u8]) -> BlobKey {
        BlobKey::from_bytes(Sha512::digest(bytes).into())
    }

    /// Bytes that are no repetition of one block (so a misplaced part shows).
    fn large(len: usize) -> Bytes {
        let mut bytes = Vec::with_capacity(len + 64);
        let mut block: [u8; 64] = Sha512::digest(b"seed").into();
        while bytes.len() < len {
            bytes.extend_from_slice(&block);
            block = Sha512::digest(block).into();
        }
        bytes.truncate(len);
        Bytes::from(bytes)
    }

    async fn stage_in_pieces(store: &S3BlobStore, bytes: &[u8]) -> Box<dyn StagedBlob> {
        let mut staged = store.stage().await.expect("stage");
        for piece in bytes.chunks(256 * 1024) {
            staged.write(piece).await.expect("write");
        }
        staged
    }

    #[tokio::test]
    async fn s3_on_s3s_fs() {
        let Some(server) = s3::start().await else {
            return;
        };
        let store = S3BlobStore::open(&server.settings("gatehouse/blobs"))
            .await
            .expect("open");
        blob_store(Arc::new(store.clone())).await;
        // Under the prefix, in the fs store's layout, byte for byte.
        let bytes = Bytes::from_static(b"byte for byte");
        let key = key_of(&bytes);
        store.put(&key, bytes.clone()).await.expect("put");
        let hex = key.to_hex();
        let file = server.object_file(&format!("gatehouse/blobs/sha512/{}/{}/{hex}", &hex[..2], &hex[2..4]));
        assert_eq!(std::fs::read(&file).expect("object file"), bytes);
        assert_eq!(store.staged().await.expect("staged"), 0);
    }

    /// Downloads of a bucket's small blobs are kept in memory (a blob never changes);
    /// checks read the bucket itself.
    #[tokio::test]
    async fn s3_downloads_keep_small_blobs_in_memory() {
        let Some(server) = s3::start().await else {
            return;
        };
        let store = S3BlobStore::open(&server.settings("cached")).await.expect("open");
        let journal = Arc::new(crate::sqlite::SqliteStore::open_in_memory().await.expect("journal"));
        let blobs = crate::blobs::Blobs::idle(Arc::new(store.clone()), journal);
        let bytes = Bytes::from_static(b"asked for by every CI job");
        let key = key_of(&bytes);
        store.put(&key, bytes.clone()).await.expect("put");
        let served = blobs.serve(&key).await.expect("serve").expect("stored");
        assert_eq!(served.into_bytes().await.expect("read"), bytes);
        // Gone from the bucket behind the server's back: downloads still have it,
        // a check does not.
        let hex = key.to_hex();
        std::fs::remove_file(server.object_file(&format!("cached/sha512/{}/{}/{hex}", &hex[..2], &hex[2..4])))
            .expect("remove the object");
        let again = blobs.serve(&key).await.expect("serve").expect("kept in memory");
        assert_eq!(again.into_bytes().await.expect("read"), bytes);
        assert!(
            blobs.open(&key).await.expect("open").is_none(),
            "a check reads the bucket"
        );
    }

    #[tokio::test]
    async fn s3_large_blobs_go_up_in_parts() {
        let Some(server) = s3::start().await else {
            return;
        };
        let store = S3BlobStore::open(&server.settings("p")).await.expect("open");
        // Over the single-PUT limit: two full 8 MiB parts and a short last one.
        let bytes = large(16 * 1024 * 1024 + 1000);
        let key = key_of(&bytes);
        let staged = stage_in_pieces(&store, &bytes).await;
        assert_eq!(store.staged().await.expect("staged"), 1, "a blob being written");
        staged.commit(&key).await.expect("commit");
        assert_eq!(store.staged().await.expect("staged"), 0, "the staging object is gone");
        let stream = store.open(&key).await.expect("open").expect("stored");
        assert_eq!((stream.len, stream.etag.clone()), (bytes.len() as u64, key.etag()));
        assert!(stream.into_bytes().await.expect("read") == bytes, "the same bytes");
        assert_eq!(store.list().await.expect("list"), std::slice::from_ref(&key));
        // The same blob again (a second pull of one tarball): success.
        stage_in_pieces(&store, &bytes)
            .await
            .commit(&key)
            .await
            .expect("an existing blob is success");
        store.put(&key, bytes).await.expect("an existing blob is success");
        assert_eq!(store.list().await.expect("list"), [key]);
    }

    #[tokio::test]
    async fn s3_a_wrong_digest_leaves_nothing() {
        let Some(server) = s3::start().await else {
            return;
        };
        let store = S3BlobStore::open(&server.settings("")).await.expect("open");
        let wrong = key_of(b"something else");
        for len in [100, 9 * 1024 * 1024] {
            let staged = stage_in_pieces(&store, &large(len)).await;
            assert!(
                matches!(staged.commit(&wrong).await, Err(BlobError::DigestMismatch)),
                "{len}"
            );
            assert!(store.list().await.expect("list").is_empty(), "{len}");
            assert!(!store.contains(&wrong).await.expect("contains"));
            assert_eq!(store.staged().await.expect("staged"), 0, "{len}");
        }
        // Dropped mid-upload: nothing stays either.
        let dropped = stage_in_pieces(&store, &large(9 * 1024 * 1024)).await;
        drop(dropped);
        assert!(store.list().await.expect("list").is_empty());
        assert_eq!(store.staged().await.expect("staged"), 0);
    }

    #[tokio::test]
    async fn s3_a_wrong_secret_names_the_endpoint_not_the_secret() {
        let Some(server) = s3::start().await else {
            return;
        };
        let mut settings = server.settings("");
        let secret = "not-the-secret-0123456789";
        if let Some(credentials) = settings.credentials.as_mut() {
            credentials.secret_access_key = secret.into();
        }
        let err = S3BlobStore::open(&settings).await.err().expect("refused");
        let message = err.to_string();
        assert!(matches!(err, BlobError::Backend { .. }), "{message}");
        assert!(message.contains(&server.endpoint), "{message}");
        assert!(message.contains("access denied"), "{message}");
        assert!(!message.contains(secret), "{message}");
        assert!(!format!("{settings:?}").contains(secret));
    }
}
