//! Registries, their default roles and member grants.

use super::*;

const REGISTRY_COLUMNS: &str = "id, name, public_read, default_role, created_at";

fn registry_from_row(row: &SqliteRow) -> StoreResult<Registry> {
    let name: String = row.try_get("name")?;
    let default_role: String = row.try_get("default_role")?;
    Ok(Registry {
        id: RegistryId(row.try_get("id")?),
        name: RegistryName::parse(&name).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        public_read: row.try_get("public_read")?,
        default_role: role_from_text(&default_role)?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl RegistryStore for SqliteStore {
    async fn create_registry(&self, name: &RegistryName, public_read: bool) -> StoreResult<Registry> {
        let row = sqlx::query(
            "INSERT INTO registries (name, public_read, created_at) VALUES ($1, $2, $3)
             RETURNING id, name, public_read, default_role, created_at",
        )
        .bind(name.as_str())
        .bind(public_read)
        .bind(now_millis())
        .fetch_one(&self.writer)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => Conflict::RegistryExists.into(),
            other => other,
        })?;
        registry_from_row(&row)
    }

    async fn registry(&self, name: &RegistryName) -> StoreResult<Option<Registry>> {
        sqlx::query(&format!("SELECT {REGISTRY_COLUMNS} FROM registries WHERE name = $1"))
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(registry_from_row)
            .transpose()
    }

    async fn registries(&self) -> StoreResult<Vec<Registry>> {
        sqlx::query(&format!("SELECT {REGISTRY_COLUMNS} FROM registries ORDER BY name"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(registry_from_row)
            .collect()
    }

    async fn set_registry_public(&self, id: RegistryId, public_read: bool) -> StoreResult<()> {
        sqlx::query("UPDATE registries SET public_read = $1 WHERE id = $2")
            .bind(public_read)
            .bind(id.0)
            .execute(&self.writer)
            .await?;
        log_change(&self.writer, "registry", Some(id)).await
    }

    async fn delete_registry(&self, id: RegistryId) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let deleted = sqlx::query("DELETE FROM registries WHERE id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        log_change(&mut *tx, "registry", Some(id)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_default_role(&self, id: RegistryId, role: Option<Role>) -> StoreResult<()> {
        sqlx::query("UPDATE registries SET default_role = $1 WHERE id = $2")
            .bind(role.map_or("none", Role::as_str))
            .bind(id.0)
            .execute(&self.writer)
            .await?;
        log_change(&self.writer, "registry", Some(id)).await
    }

    async fn member_role(&self, id: RegistryId, user: UserId) -> StoreResult<Option<Role>> {
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM registry_members WHERE registry_id = $1 AND user_id = $2")
                .bind(id.0)
                .bind(user.0)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match role {
            Some(text) => role_from_text(&text)?,
            None => None,
        })
    }

    async fn set_member_role(&self, id: RegistryId, user: UserId, role: Option<Role>) -> StoreResult<()> {
        match role {
            Some(role) => {
                sqlx::query(
                    "INSERT INTO registry_members (registry_id, user_id, role) VALUES ($1, $2, $3)
                     ON CONFLICT (registry_id, user_id) DO UPDATE SET role = excluded.role",
                )
                .bind(id.0)
                .bind(user.0)
                .bind(role.as_str())
                .execute(&self.writer)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM registry_members WHERE registry_id = $1 AND user_id = $2")
                    .bind(id.0)
                    .bind(user.0)
                    .execute(&self.writer)
                    .await?;
            }
        }
        log_change(&self.writer, "registry", Some(id)).await
    }
}
