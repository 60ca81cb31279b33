//! API tokens (only their hashes).

use super::*;

#[async_trait]
impl TokenStore for PostgresStore {
    async fn insert_token(&self, token: &NewToken) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tokens (key, secret_hash, display, user_id, name, readonly, cidr_whitelist, registries,
                                 packages, created_at, expires_at, published_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&token.key)
        .bind(&token.secret_hash)
        .bind(&token.display)
        .bind(token.user_id.0)
        .bind(&token.name)
        .bind(token.readonly)
        .bind(json_list_text(&token.cidr_whitelist)?)
        .bind(json_list_text(&token.registries)?)
        .bind(json_list_text(&token.packages)?)
        .bind(now_millis())
        .bind(token.expires_at)
        .bind(&token.published_by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn token_by_secret_hash(&self, secret_hash: &str) -> StoreResult<Option<Token>> {
        sqlx::query(&format!("{TOKEN_SELECT} WHERE tokens.secret_hash = $1"))
            .bind(secret_hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    async fn touch_token(&self, secret_hash: &str, at: Millis) -> StoreResult<()> {
        sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE secret_hash = $2")
            .bind(at)
            .bind(secret_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn tokens_of(&self, user: UserId) -> StoreResult<Vec<Token>> {
        sqlx::query(&format!(
            "{TOKEN_SELECT} WHERE tokens.user_id = $1 AND tokens.revoked_at IS NULL ORDER BY tokens.id"
        ))
        .bind(user.0)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(token_from_row)
        .collect()
    }

    async fn all_tokens(&self) -> StoreResult<Vec<Token>> {
        sqlx::query(&format!(
            "{TOKEN_SELECT} WHERE tokens.revoked_at IS NULL ORDER BY tokens.id"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(token_from_row)
        .collect()
    }

    async fn revoke_token(&self, user: Option<UserId>, key_or_hash: &str, at: Millis) -> StoreResult<bool> {
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
                let done = sqlx::query(
                    "UPDATE tokens SET revoked_at = $1
                     WHERE ($2::bigint IS NULL OR user_id = $2) AND revoked_at IS NULL
                       AND (key = $3 OR secret_hash = $3)",
                )
                .bind(at)
                .bind(user.map(|u| u.0))
                .bind(key_or_hash)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                self.commit(tx, &[Logged::kind("credentials", None)]).await?;
                Ok(true)
            })
        })
        .await
    }
}
