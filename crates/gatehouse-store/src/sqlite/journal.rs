//! The blob journal's rows (see `blob_journal`).

use super::*;

#[async_trait]
impl BlobJournalStore for SqliteStore {
    async fn journaled_blobs(&self, after: i64, limit: u32) -> StoreResult<Vec<JournaledBlob>> {
        sqlx::query("SELECT id, sha512, bytes FROM blob_journal WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(limit)
            // The writer wrote these rows moments ago: its cache holds their pages, and
            // reading them there keeps the blobs out of the readers' caches.
            .fetch_all(&self.writer)
            .await?
            .iter()
            .map(|row| {
                Ok(JournaledBlob {
                    id: row.try_get("id")?,
                    sha512_hex: row.try_get("sha512")?,
                    bytes: row.try_get("bytes")?,
                })
            })
            .collect()
    }

    async fn journaled_bytes(&self, sha512_hex: &str) -> StoreResult<Option<Vec<u8>>> {
        // No index: the table holds the publishes since the task's last round (normally
        // under a second's worth), and this runs only until their files are written.
        Ok(
            sqlx::query_scalar("SELECT bytes FROM blob_journal WHERE sha512 = $1 LIMIT 1")
                .bind(sha512_hex)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn journaled_keys(&self) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT sha512 FROM blob_journal ORDER BY id")
            .fetch_all(&self.pool)
            .await?)
    }

    async fn forget_journaled(&self, up_to: i64) -> StoreResult<()> {
        sqlx::query("DELETE FROM blob_journal WHERE id <= $1")
            .bind(up_to)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
