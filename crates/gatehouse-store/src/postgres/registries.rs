//! Registries, their default roles and member grants.

use super::*;

#[async_trait]
impl RegistryStore for PostgresStore {
    async fn create_registry(&self, name: &RegistryName, public_read: bool) -> StoreResult<Registry> {
        let row = sqlx::query(&format!(
            "INSERT INTO registries (name, public_read, created_at) VALUES ($1, $2, $3) RETURNING {REGISTRY_COLUMNS}"
        ))
        .bind(name.as_str())
        .bind(public_read)
        .bind(now_millis())
        .fetch_one(&self.pool)
        .await?;
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
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
                sqlx::query("UPDATE registries SET public_read = $1 WHERE id = $2")
                    .bind(public_read)
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await?;
                self.commit(tx, &[Logged::kind("registry", Some(id))]).await
            })
        })
        .await
    }

    async fn delete_registry(&self, id: RegistryId) -> StoreResult<()> {
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
                let deleted = sqlx::query("DELETE FROM registries WHERE id = $1")
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await?;
                if deleted.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                self.commit(tx, &[Logged::kind("registry", Some(id))]).await
            })
        })
        .await
    }

    async fn rename_registry(&self, id: RegistryId, old: &RegistryName, new: &RegistryName) -> StoreResult<()> {
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
                let renamed = sqlx::query("UPDATE registries SET name = $1 WHERE id = $2")
                    .bind(new.as_str())
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await?;
                if renamed.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                sqlx::query("UPDATE upstreams SET spec = $2 WHERE spec = $1")
                    .bind(format!("registry:{old}"))
                    .bind(format!("registry:{new}"))
                    .execute(&mut *tx)
                    .await?;
                // The list is rewritten as SQLite's json_group_array writes it
                // (`["a","b"]`), in its order.
                sqlx::query(
                    "UPDATE tokens SET registries =
                         (SELECT '[' || string_agg(to_json(CASE WHEN e.value = $1 THEN $2 ELSE e.value END)::text, ','
                                                   ORDER BY e.n) || ']'
                          FROM json_array_elements_text(tokens.registries::json) WITH ORDINALITY AS e (value, n))
                     WHERE registries IS NOT NULL
                       AND EXISTS (SELECT 1 FROM json_array_elements_text(tokens.registries::json) AS e (value)
                                   WHERE e.value = $1)",
                )
                .bind(old.as_str())
                .bind(new.as_str())
                .execute(&mut *tx)
                .await?;
                self.commit(
                    tx,
                    &[Logged::kind("registry", Some(id)), Logged::kind("credentials", None)],
                )
                .await
            })
        })
        .await
    }

    async fn clone_registry(&self, source: RegistryId, name: &RegistryName) -> StoreResult<Registry> {
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
                let row = sqlx::query(&format!(
                    "INSERT INTO registries (name, public_read, default_role, created_at)
                     SELECT $1, public_read, default_role, $2 FROM registries WHERE id = $3
                     RETURNING {REGISTRY_COLUMNS}"
                ))
                .bind(name.as_str())
                .bind(now_millis())
                .bind(source.0)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
                let clone = registry_from_row(&row)?;
                // The same statements as SQLite's clone (it copies no attestations either).
                for statement in [
                    "INSERT INTO upstreams (registry_id, position, spec, token, basic_auth, internal)
                     SELECT $1, position, spec, token, basic_auth, internal FROM upstreams WHERE registry_id = $2
                     ORDER BY id",
                    "INSERT INTO registry_members (registry_id, user_id, role)
                     SELECT $1, user_id, role FROM registry_members WHERE registry_id = $2",
                    "INSERT INTO claims (registry_id, pattern, claimed_by, claimed_at)
                     SELECT $1, pattern, claimed_by, claimed_at FROM claims WHERE registry_id = $2",
                    "INSERT INTO policies (registry_id, document, updated_at, updated_by)
                     SELECT $1, document, updated_at, updated_by FROM policies WHERE registry_id = $2",
                    "INSERT INTO packages (registry_id, name, name_folded, rev, created_at, modified_at, description,
                                           keywords, internal)
                     SELECT $1, name, name_folded, rev, created_at, modified_at, description, keywords, internal
                     FROM packages WHERE registry_id = $2 ORDER BY id",
                    "INSERT INTO versions (package_id, version, release_key, manifest, blob_sha512, blob_size,
                                           published_at, publisher, deprecated, unpublished_at, source, facts,
                                           install_scripts, attested)
                     SELECT copy.id, v.version, v.release_key, v.manifest, v.blob_sha512, v.blob_size, v.published_at,
                            v.publisher, v.deprecated, v.unpublished_at, v.source, v.facts, v.install_scripts,
                            v.attested
                     FROM versions v JOIN packages original ON original.id = v.package_id
                     JOIN packages copy ON copy.registry_id = $1 AND copy.name = original.name
                     WHERE original.registry_id = $2 ORDER BY v.id",
                    "INSERT INTO dist_tags (package_id, tag, version)
                     SELECT copy.id, t.tag, t.version
                     FROM dist_tags t JOIN packages original ON original.id = t.package_id
                     JOIN packages copy ON copy.registry_id = $1 AND copy.name = original.name
                     WHERE original.registry_id = $2",
                    "INSERT INTO maintainers (package_id, user_id)
                     SELECT copy.id, m.user_id
                     FROM maintainers m JOIN packages original ON original.id = m.package_id
                     JOIN packages copy ON copy.registry_id = $1 AND copy.name = original.name
                     WHERE original.registry_id = $2",
                ] {
                    sqlx::query(statement)
                        .bind(clone.id.0)
                        .bind(source.0)
                        .execute(&mut *tx)
                        .await?;
                }
                self.commit(tx, &[Logged::kind("registry", Some(clone.id))]).await?;
                Ok(clone)
            })
        })
        .await
    }

    async fn set_default_role(&self, id: RegistryId, role: Option<Role>) -> StoreResult<()> {
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
                sqlx::query("UPDATE registries SET default_role = $1 WHERE id = $2")
                    .bind(role.map_or("none", Role::as_str))
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await?;
                self.commit(tx, &[Logged::kind("registry", Some(id))]).await
            })
        })
        .await
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

    async fn grants(&self) -> StoreResult<Vec<Grant>> {
        let rows = sqlx::query(
            "SELECT r.name AS registry, u.name AS user, m.role
             FROM registry_members m JOIN registries r ON r.id = m.registry_id JOIN users u ON u.id = m.user_id
             ORDER BY r.name, u.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut grants = Vec::with_capacity(rows.len());
        for row in &rows {
            let registry: String = row.try_get("registry")?;
            let role: String = row.try_get("role")?;
            let Some(role) = role_from_text(&role)? else { continue };
            grants.push(Grant {
                registry: registry_name(&registry)?,
                user: row.try_get("user")?,
                role,
            });
        }
        Ok(grants)
    }

    async fn set_member_role(&self, id: RegistryId, user: UserId, role: Option<Role>) -> StoreResult<()> {
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
                match role {
                    Some(role) => {
                        sqlx::query(
                            "INSERT INTO registry_members (registry_id, user_id, role) VALUES ($1, $2, $3)
                             ON CONFLICT (registry_id, user_id) DO UPDATE SET role = excluded.role",
                        )
                        .bind(id.0)
                        .bind(user.0)
                        .bind(role.as_str())
                        .execute(&mut *tx)
                        .await?;
                    }
                    None => {
                        sqlx::query("DELETE FROM registry_members WHERE registry_id = $1 AND user_id = $2")
                            .bind(id.0)
                            .bind(user.0)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                self.commit(tx, &[Logged::kind("registry", Some(id))]).await
            })
        })
        .await
    }
}
