//! The change log other processes follow.
//!
//! `seq` is a BIGSERIAL, taken when a row is inserted, not when it commits: were two
//! transactions to take 10 and 11 and 11 commit first, a reader at 9 would read 11,
//! move its cursor there, and never see 10. So every transaction that logs a change
//! first takes one advisory lock (`Lock::ChangeLog`), right before it inserts its
//! rows, as its last statements: the lock is held until it has committed (PostgreSQL
//! makes a commit visible before it releases the transaction's locks), so the next
//! writer takes the next numbers only after this one's are visible, and seqs become
//! visible in order. It serializes only the tail of writing transactions. The
//! `pg_notify` in the same transaction is a wake-up for the listeners of other
//! processes; the table is the truth (a notification is lost while one is away).

use std::sync::{Arc, Weak};

use tokio::sync::Notify;

use super::*;

/// The channel `pg_notify` wakes; the payload is the newest `seq`.
pub(crate) const CHANNEL: &str = "gatehouse_changes";

/// Takes the change log's lock for the rest of the transaction (see the module).
pub(crate) async fn lock_change_log(conn: &mut sqlx::PgConnection) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
        .bind(Lock::ChangeLog as i32)
        .execute(conn)
        .await?;
    Ok(())
}

/// Inserts `changes` under the lock, wakes the listeners and commits.
pub(super) async fn commit(mut tx: Tx<'_>, writer: &str, changes: &[Logged<'_>]) -> StoreResult<()> {
    if !changes.is_empty() {
        lock_change_log(&mut tx).await?;
        let at = now_millis();
        let mut newest = None;
        for change in changes {
            let seq: Option<i64> = match *change {
                Logged::Package(package) => {
                    sqlx::query_scalar(
                        "INSERT INTO changes (kind, registry_id, name, at, writer)
                         SELECT 'package', registry_id, name, $1, $2 FROM packages WHERE id = $3 RETURNING seq",
                    )
                    .bind(at)
                    .bind(writer)
                    .bind(package.0)
                    .fetch_optional(&mut *tx)
                    .await?
                }
                Logged::Named { kind, registry, name } => Some(
                    sqlx::query_scalar(
                        "INSERT INTO changes (kind, registry_id, name, at, writer)
                         VALUES ($1, $2, $3, $4, $5) RETURNING seq",
                    )
                    .bind(kind)
                    .bind(registry.map(|r| r.0))
                    .bind(name)
                    .bind(at)
                    .bind(writer)
                    .fetch_one(&mut *tx)
                    .await?,
                ),
            };
            newest = seq.or(newest);
        }
        if let Some(seq) = newest {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(seq.to_string())
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

#[async_trait]
impl ChangeLog for PostgresStore {
    async fn last_change(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM changes")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn changes_since(&self, seq: i64) -> StoreResult<Vec<Change>> {
        sqlx::query(
            "SELECT seq, kind, name, writer IS NOT DISTINCT FROM $2 AS own FROM changes
             WHERE seq > $1 ORDER BY seq LIMIT 10000",
        )
        .bind(seq)
        .bind(&self.writer_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let kind: String = r.try_get("kind")?;
            let name: Option<String> = r.try_get("name")?;
            Ok(Change {
                seq: r.try_get("seq")?,
                kind: change_kind(&kind, name)?,
                own: r.try_get("own")?,
            })
        })
        .collect()
    }

    async fn prune_changes(&self, before: Millis) -> StoreResult<()> {
        sqlx::query("DELETE FROM changes WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn change_wakeups(&self) -> Option<Arc<Notify>> {
        let wakeups = self.wakeups.get_or_init(|| {
            let wakeups = Arc::new(Notify::new());
            tokio::spawn(listen(self.pool.clone(), Arc::downgrade(&wakeups)));
            wakeups
        });
        Some(wakeups.clone())
    }
}

/// `LISTEN`s on [`CHANNEL`] and wakes `wakeups` on every notification, until the
/// store is dropped or its pool closed. A lost connection is made again; the
/// notifications sent meanwhile are lost, so a reconnect wakes too.
async fn listen(pool: sqlx::PgPool, wakeups: Weak<Notify>) {
    const RETRY: Duration = Duration::from_secs(1);
    while !pool.is_closed() {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for changes; polling meanwhile");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "cannot listen for changes; polling meanwhile");
            tokio::time::sleep(RETRY).await;
            continue;
        }
        loop {
            let received = listener.try_recv().await;
            let Some(wakeups) = wakeups.upgrade() else { return };
            match received {
                // `None`: the connection was lost and is made again.
                Ok(_) => wakeups.notify_one(),
                Err(e) => {
                    tracing::warn!(error = %e, "lost the change notifications; polling meanwhile");
                    break;
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}
