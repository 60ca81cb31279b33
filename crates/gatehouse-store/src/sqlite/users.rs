//! Users.

use super::*;

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(
        &self,
        name: &str,
        email: Option<&str>,
        password_hash: &str,
        is_admin: bool,
    ) -> StoreResult<User> {
        let row = sqlx::query(&format!(
            "INSERT INTO users (name, email, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING {}",
            USER_COLUMNS.replace("users.", "")
        ))
        .bind(name)
        .bind(email)
        .bind(password_hash)
        .bind(is_admin)
        .bind(now_millis())
        .fetch_one(&self.writer)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => Conflict::UserExists.into(),
            other => other,
        })?;
        user_from_row(&row)
    }

    async fn user(&self, name: &str) -> StoreResult<Option<User>> {
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn users(&self) -> StoreResult<Vec<User>> {
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    async fn set_password_hash(&self, user: UserId, password_hash: &str) -> StoreResult<()> {
        let updated = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user.0)
            .execute(&self.writer)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn set_user_disabled(&self, user: UserId, disabled: bool) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
            .bind(disabled.then(now_millis))
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        log_change(&mut *tx, "credentials", None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_user_admin(&self, user: UserId, admin: bool) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query("UPDATE users SET is_admin = $1 WHERE id = $2")
            .bind(admin)
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        log_change(&mut *tx, "credentials", None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_user(&self, user: UserId) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        log_change(&mut *tx, "credentials", None).await?;
        log_change(&mut *tx, "registry", None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn clear_login_failures(&self, name: &str) -> StoreResult<()> {
        log_named_change(&self.writer, "unlock", None, Some(name)).await
    }
}
