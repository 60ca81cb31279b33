//! The blob journal's rows (see `blob_journal`), as in SQLite: small tarballs held in
//! the database until their blobs are written.

use super::*;

#[async_trait]
impl BlobJournalStore for PostgresStore {
    async fn journaled_blobs(&self, after: i64, limit: u32) -> StoreResult<Vec<JournaledBlob>> {
        sqlx::query("SELECT id, sha512, bytes FROM blob_journal WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
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
        // No index, as in SQLite: the table holds only the last moments' publishes.
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
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
