//! The blob journal's rows (see `blob_journal`).

use super::*;

#[async_trait]
impl BlobJournalStore for SqliteStore {
    async fn journaled_blobs(&self) -> StoreResult<Vec<JournaledBlob>> {
        sqlx::query("SELECT id, sha512 FROM blob_journal ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(JournaledBlob {
                    id: row.try_get("id")?,
                    sha512_hex: row.try_get("sha512")?,
                })
            })
            .collect()
    }

    async fn journaled_bytes(&self, id: i64) -> StoreResult<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT bytes FROM blob_journal WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
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
