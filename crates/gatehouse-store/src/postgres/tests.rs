//! What only PostgreSQL has to show: several processes at once (the conformance
//! suite runs the rest, in `conformance`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sqlx::Connection as _;

use super::*;
use crate::registry::RegistryName;
use crate::test_support::journaled_version;
use crate::test_support::postgres::{database, empty_database};

/// Two stores on one database: two replicas.
async fn two_stores(url: &str) -> (Arc<PostgresStore>, Arc<PostgresStore>) {
    let a = PostgresStore::connect(url, 4).await.expect("first store");
    let b = PostgresStore::connect(url, 4).await.expect("second store");
    (Arc::new(a), Arc::new(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_at_once_migrate_an_empty_database_once() {
    let Some(url) = empty_database().await else { return };
    let (a, b) = tokio::join!(PostgresStore::connect(&url, 2), PostgresStore::connect(&url, 2));
    let (a, _b) = (a.expect("first"), b.expect("second"));
    let applied: Vec<(i64, bool)> = sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&a.pool)
        .await
        .expect("migrations");
    let expected: Vec<(i64, bool)> = MIGRATOR.iter().map(|m| (m.version, true)).collect();
    assert_eq!(applied, expected);
    // And the schema works.
    a.create_registry(&RegistryName::parse("r").expect("name"), false)
        .await
        .expect("registry");
}

/// The same version from two processes at once: the unique constraint decides, and
/// the loser hears what SQLite says, `VersionExists`; for a new package as well (one
/// creates it, the other waits for it and finds it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_version_from_two_processes_has_one_winner() {
    let Some(url) = database().await else { return };
    let (a, b) = two_stores(&url).await;
    let registry = a
        .create_registry(&RegistryName::parse("race").expect("name"), false)
        .await
        .expect("registry");
    let existing = a
        .insert_version(&journaled_version(
            registry.id,
            "existing",
            "0.0.1",
            &Bytes::from_static(b"0"),
            None,
        ))
        .await
        .expect("first version")
        .package_id;
    for round in 0..10 {
        for known in [None, Some(existing)] {
            let name = match known {
                None => format!("new-{round}"),
                Some(_) => "existing".to_owned(),
            };
            let version = format!("1.0.{round}");
            let attempt = |store: Arc<PostgresStore>, bytes: &'static [u8]| {
                let new = journaled_version(registry.id, &name, &version, &Bytes::from_static(bytes), known);
                tokio::spawn(async move { store.insert_version(&new).await })
            };
            let (first, second) = tokio::join!(attempt(a.clone(), b"a"), attempt(b.clone(), b"b"));
            let outcomes = [first.expect("task"), second.expect("task")];
            let won = outcomes.iter().filter(|o| o.is_ok()).count();
            assert_eq!(won, 1, "{name}@{version}: {outcomes:?}");
            assert!(
                outcomes
                    .iter()
                    .any(|o| matches!(o, Err(StoreError::Conflict(Conflict::VersionExists)))),
                "{name}@{version}: {outcomes:?}"
            );
            if known.is_none() {
                assert!(outcomes.iter().flatten().all(|i| i.created_package));
            }
            let record = b
                .package(registry.id, &PackageName::parse(&name).expect("name"))
                .await
                .expect("read")
                .expect("package");
            assert_eq!(record.versions.iter().filter(|v| v.version == version).count(), 1);
        }
    }
    let packages = a.all_packages(registry.id).await.expect("packages");
    assert_eq!(packages.len(), 11, "one package per name: {packages:?}");
}

/// A change inserted first but committed last is still read: the later writer waits
/// at the change log's lock, so a reader's cursor never passes an uncommitted seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_log_never_skips_a_change_that_commits_late() {
    let Some(url) = database().await else { return };
    let (store, other) = two_stores(&url).await;
    let cursor = store.last_change().await.expect("cursor");

    // A writer that logged its change and has not committed yet, as the store does it.
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    let mut early = conn.begin().await.expect("begin");
    lock_change_log(&mut early).await.expect("lock");
    let early_seq: i64 = sqlx::query_scalar(
        "INSERT INTO changes (kind, name, at, writer) VALUES ('unlock', 'early', 0, 'test') RETURNING seq",
    )
    .fetch_one(&mut *early)
    .await
    .expect("insert");

    // Another process logs a later change meanwhile: it must wait.
    let late = tokio::spawn(async move { other.clear_login_failures("late").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !late.is_finished(),
        "the later writer waits for the earlier one's commit"
    );
    assert!(
        store.changes_since(cursor).await.expect("read").is_empty(),
        "nothing is visible yet, so the cursor stays"
    );

    early.commit().await.expect("commit");
    late.await.expect("task").expect("late change");
    let seen: Vec<(i64, ChangeKind)> = store
        .changes_since(cursor)
        .await
        .expect("read")
        .into_iter()
        .map(|c| (c.seq, c.kind))
        .collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], (early_seq, ChangeKind::LoginUnlocked("early".into())));
    assert!(seen[1].0 > early_seq);
    assert_eq!(seen[1].1, ChangeKind::LoginUnlocked("late".into()));
}

/// Every change row wakes the listeners, with the newest seq.
#[tokio::test]
async fn a_change_notifies_its_seq() {
    let Some(url) = database().await else { return };
    let store = PostgresStore::connect(&url, 2).await.expect("store");
    let mut listener = sqlx::postgres::PgListener::connect(&url).await.expect("listener");
    listener.listen(changes::CHANNEL).await.expect("listen");
    store.clear_login_failures("someone").await.expect("change");
    let note = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("in time")
        .expect("notification");
    assert_eq!(note.payload(), store.last_change().await.expect("seq").to_string());
}
