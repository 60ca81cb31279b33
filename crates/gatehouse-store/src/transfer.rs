//! Moving a whole install from one stack to another (`gatehouse migrate`): every
//! table, row for row, in an order where a row comes after the rows it refers to;
//! then every tarball a version refers to, streamed and verified against its digest.
//! It can be run again after an interruption: rows a unique key finds already there,
//! and blobs the destination holds, are skipped.
//!
//! The backends read and write rows through [`TableCopy`] with their own SQL; the
//! values in between are [`Cell`]s, so a SQLite integer that is a boolean becomes a
//! PostgreSQL `BOOLEAN` and back.

use std::collections::BTreeSet;
use std::future::Future;

use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};

use crate::blobs::{BlobError, BlobKey};
use crate::storage::Storage;
use crate::{StoreError, StoreResult};

/// The copied tables, each after the tables it refers to. A table of the schema must
/// be here or in [`NOT_COPIED`]: the copy refuses a schema with one it doesn't know.
pub const TABLES: &[&str] = &[
    "registries",
    "users",
    "registry_members",
    "tokens",
    "packages",
    "versions",
    "dist_tags",
    "maintainers",
    "audit_log",
    "upstreams",
    "upstream_packuments",
    "claims",
    "policies",
    "advisories",
    "advisory_packages",
    "advisory_imports",
    "policy_exceptions",
    "reviews",
    "decisions",
    "trusted_publishers",
    "web_sessions",
];

/// Left behind: the change log (each install follows its own), the blob journal
/// (its blobs are copied as blobs), and minutes-long handoffs and login counts.
pub const NOT_COPIED: &[&str] = &["changes", "blob_journal", "handoffs", "login_failures"];

/// Rows per insert statement (well under both backends' bound-parameter limits).
const BATCH: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
}

/// What a column holds, as far as copying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Integer,
    /// PostgreSQL's `BOOLEAN`; SQLite keeps booleans as integers.
    Boolean,
    Text,
    Bytes,
}

/// One value on its way between the stores; a boolean travels as 0 or 1.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cell {
    Null,
    Integer(i64),
    Text(String),
    Bytes(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(
        "the destination holds another install ({0}); migrate into an empty database, or into the one an interrupted migrate of this install left"
    )]
    NotEmpty(String),
    #[error("the two schemas differ ({0}); run the same Gatehouse version on both")]
    Schema(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the destination's blob store: {0}")]
    Blobs(#[from] BlobError),
}

/// What [`copy`] tells as it goes.
pub trait Progress: Send {
    /// `copied` rows of `table` so far, `new` of them not there before; `done` at its end.
    fn table(&mut self, table: &str, copied: u64, new: u64, done: bool);
    /// `copied` of `total` blobs so far (`new` of them not there before).
    fn blobs(&mut self, copied: u64, total: u64, new: u64);
}

/// What [`copy`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub new_rows: u64,
    pub blobs: u64,
    pub new_blobs: u64,
    /// Blobs that could not be copied, with why: missing from the source, or bytes that
    /// do not hash to their name.
    pub bad_blobs: Vec<(String, String)>,
}

/// Copies everything of `from` into `to` (see the module).
pub async fn copy(from: &Storage, to: &Storage, progress: &mut dyn Progress) -> Result<Summary, TransferError> {
    for tables in [from.meta.tables().await?, to.meta.tables().await?] {
        if let Some(unknown) = tables
            .iter()
            .find(|t| !TABLES.contains(&t.as_str()) && !NOT_COPIED.contains(&t.as_str()))
        {
            return Err(TransferError::Schema(format!(
                "table {unknown} is unknown to this copy"
            )));
        }
    }
    same_install(from, to, "registries", "registry").await?;
    same_install(from, to, "users", "user").await?;
    let mut summary = Summary::default();
    for table in TABLES {
        let (source, destination) = columns(from, to, table).await?;
        let mut rows = from.meta.rows(table, &source);
        let (mut copied, mut new, mut batch) = (0, 0, Vec::with_capacity(BATCH));
        loop {
            let row = rows.try_next().await?;
            let end = row.is_none();
            batch.extend(row);
            if batch.len() == BATCH || (end && !batch.is_empty()) {
                new += to.meta.insert_rows(table, &destination, &batch).await?;
                copied += batch.len() as u64;
                batch.clear();
                if !end {
                    progress.table(table, copied, new, false);
                }
            }
            if end {
                break;
            }
        }
        progress.table(table, copied, new, true);
        summary.rows += copied;
        summary.new_rows += new;
    }
    to.meta.after_copy().await?;
    copy_blobs(from, to, progress, &mut summary).await?;
    Ok(summary)
}

/// The source's columns of `table` (their kinds as it stores them) in the
/// destination's order, and the destination's.
async fn columns(from: &Storage, to: &Storage, table: &str) -> Result<(Vec<Column>, Vec<Column>), TransferError> {
    let (source, destination) = (from.meta.columns(table).await?, to.meta.columns(table).await?);
    let differ = || {
        let names = |columns: &[Column]| columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>().join(", ");
        TransferError::Schema(format!(
            "{table} has ({}) here and ({}) there",
            names(&source),
            names(&destination)
        ))
    };
    if source.len() != destination.len() {
        return Err(differ());
    }
    let ordered = destination
        .iter()
        .map(|d| source.iter().find(|s| s.name == d.name).cloned().ok_or_else(differ))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((ordered, destination))
}

/// The destination is empty, or holds what an earlier copy of this install left: each
/// of its rows of `table` (registries, users) has the source's id and name.
async fn same_install(from: &Storage, to: &Storage, table: &str, noun: &str) -> Result<(), TransferError> {
    let identity = [
        Column {
            name: "id".into(),
            kind: Kind::Integer,
        },
        Column {
            name: "name".into(),
            kind: Kind::Text,
        },
    ];
    let source: BTreeSet<Vec<Cell>> = from.meta.rows(table, &identity).try_collect().await?;
    let mut destination = to.meta.rows(table, &identity);
    while let Some(row) = destination.try_next().await? {
        if !source.contains(&row) {
            let name = match row.get(1) {
                Some(Cell::Text(name)) => name.clone(),
                _ => String::new(),
            };
            return Err(TransferError::NotEmpty(format!(
                "{noun} {name:?} is not this install's"
            )));
        }
    }
    Ok(())
}

/// Every blob a version refers to, streamed from `from` into `to`, where it is
/// written only once its bytes hash to its name.
async fn copy_blobs(
    from: &Storage,
    to: &Storage,
    progress: &mut dyn Progress,
    summary: &mut Summary,
) -> Result<(), TransferError> {
    let digest = [Column {
        name: "blob_sha512".into(),
        kind: Kind::Text,
    }];
    let keys: BTreeSet<String> = from
        .meta
        .rows("versions", &digest)
        .try_filter_map(|row| async move {
            Ok(match row.into_iter().next() {
                Some(Cell::Text(hex)) => Some(hex),
                _ => None,
            })
        })
        .try_collect()
        .await?;
    let total = keys.len() as u64;
    for hex in keys {
        summary.blobs += 1;
        let Ok(key) = BlobKey::parse_hex(&hex) else {
            summary
                .bad_blobs
                .push((hex, "a version names it, but it is no sha512".into()));
            continue;
        };
        if to.blobs.store().contains(&key).await? {
            progress.blobs(summary.blobs, total, summary.new_blobs);
            continue;
        }
        match copy_blob(from, to, &key).await {
            Ok(true) => summary.new_blobs += 1,
            Ok(false) => summary
                .bad_blobs
                .push((hex, "missing from this install's blob store".into())),
            Err(BlobError::DigestMismatch) => summary
                .bad_blobs
                .push((hex, "its bytes here do not hash to its name; not copied".into())),
            Err(e) => return Err(e.into()),
        }
        progress.blobs(summary.blobs, total, summary.new_blobs);
    }
    Ok(())
}

/// `false` when `from` does not hold the blob.
async fn copy_blob(from: &Storage, to: &Storage, key: &BlobKey) -> Result<bool, BlobError> {
    let Some(blob) = from.blobs.open(key).await? else {
        return Ok(false);
    };
    let mut staged = to.blobs.store().stage().await?;
    let mut body = blob.body;
    while let Some(piece) = body.try_next().await? {
        staged.write(&piece).await?;
    }
    staged.commit(key).await?;
    Ok(true)
}

/// A stream of the rows `produce` sends, read by a task of its own (so the query it
/// runs may own its SQL); an error ends the stream with it.
pub(crate) fn spawn_rows<F, Fut>(produce: F) -> BoxStream<'static, StoreResult<Vec<Cell>>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<StoreResult<Vec<Cell>>>) -> Fut,
    Fut: Future<Output = StoreResult<()>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(BATCH);
    let failed = tx.clone();
    let task = produce(tx);
    tokio::spawn(async move {
        if let Err(e) = task.await {
            let _ = failed.send(Err(e)).await;
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|row| (row, rx)) }).boxed()
}

/// `"name"`: an identifier from the schema, quoted for SQL.
pub(crate) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `SELECT "a", "b" FROM "table"`.
pub(crate) fn select(table: &str, columns: &[Column]) -> String {
    let list: Vec<String> = columns.iter().map(|c| quoted(&c.name)).collect();
    format!("SELECT {} FROM {}", list.join(", "), quoted(table))
}

/// `INSERT INTO "table" ("a", "b") VALUES ($1, $2), … ON CONFLICT DO NOTHING` for `rows` rows.
pub(crate) fn insert(table: &str, columns: &[Column], rows: usize) -> String {
    let list: Vec<String> = columns.iter().map(|c| quoted(&c.name)).collect();
    let mut values = Vec::with_capacity(rows);
    for row in 0..rows {
        let params: Vec<String> = (0..columns.len())
            .map(|i| format!("${}", row * columns.len() + i + 1))
            .collect();
        values.push(format!("({})", params.join(", ")));
    }
    format!(
        "INSERT INTO {} ({}) VALUES {} ON CONFLICT DO NOTHING",
        quoted(table),
        list.join(", "),
        values.join(", ")
    )
}
