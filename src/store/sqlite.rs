//! The embedded metadata store: SQLite in WAL mode through sqlx.
//!
//! Writes run in `BEGIN IMMEDIATE` transactions so concurrent writers queue on the
//! database lock (busy timeout) instead of failing on a stale read snapshot.
//! `synchronous = FULL` makes every acknowledged commit survive a crash.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::*;
use crate::npm::name::PackageName;
use crate::registry::Role;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict("already exists"),
            _ => StoreError::Database(err.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError::Database(format!("migration failed: {err}"))
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(StoreError::from)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    async fn write_tx(&self) -> StoreResult<sqlx::Transaction<'_, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

fn role_from_text(text: &str) -> StoreResult<Option<Role>> {
    match text {
        "none" => Ok(None),
        other => Role::parse(other)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(e.to_string())),
    }
}

fn json_list(text: Option<String>) -> StoreResult<Vec<String>> {
    match text {
        Some(text) => serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string())),
        None => Ok(Vec::new()),
    }
}

fn json_list_text(list: &[String]) -> StoreResult<Option<String>> {
    (!list.is_empty())
        .then(|| serde_json::to_string(list))
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

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

fn user_from_row(row: &SqliteRow) -> StoreResult<User> {
    Ok(User {
        id: UserId(row.try_get("user_id")?),
        name: row.try_get("user_name")?,
        email: row.try_get("email")?,
        is_admin: row.try_get("is_admin")?,
        password_hash: row.try_get("password_hash")?,
        created_at: row.try_get("user_created_at")?,
    })
}

const USER_COLUMNS: &str = "users.id AS user_id, users.name AS user_name, users.email, users.is_admin, users.password_hash, users.created_at AS user_created_at";

fn token_from_row(row: &SqliteRow) -> StoreResult<Token> {
    Ok(Token {
        key: row.try_get("key")?,
        display: row.try_get("display")?,
        user: user_from_row(row)?,
        name: row.try_get("token_name")?,
        readonly: row.try_get("readonly")?,
        cidr_whitelist: json_list(row.try_get("cidr_whitelist")?)?,
        registries: json_list(row.try_get("registries")?)?,
        packages: json_list(row.try_get("packages")?)?,
        created_at: row.try_get("token_created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn package_name(raw: String) -> StoreResult<PackageName> {
    PackageName::parse(&raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Bumps `rev` and `modified_at`; with `expected_rev`, refuses a stale caller.
async fn bump_rev(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    package: PackageId,
    expected_rev: Option<i64>,
) -> StoreResult<()> {
    let updated =
        sqlx::query("UPDATE packages SET rev = rev + 1, modified_at = $1 WHERE id = $2 AND ($3 IS NULL OR rev = $3)")
            .bind(now_millis())
            .bind(package.0)
            .bind(expected_rev)
            .execute(&mut **tx)
            .await?;
    match updated.rows_affected() {
        1 => {}
        _ if expected_rev.is_some() => return Err(StoreError::Stale),
        _ => return Err(StoreError::NotFound),
    }
    // Other processes (the CLI, replicas) learn of the change from this log.
    sqlx::query(
        "INSERT INTO changes (kind, registry_id, name, at) SELECT 'package', registry_id, name, $1 FROM packages WHERE id = $2",
    )
        .bind(now_millis())
        .bind(package.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Copies the search fields of the version `latest` points at onto the package.
async fn refresh_search_fields(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, package: PackageId) -> StoreResult<()> {
    sqlx::query(
        "UPDATE packages SET
            description = (SELECT json_extract(v.manifest, '$.description') FROM versions v
                           JOIN dist_tags t ON t.package_id = v.package_id AND t.version = v.version
                           WHERE t.package_id = packages.id AND t.tag = 'latest'),
            keywords = (SELECT json_extract(v.manifest, '$.keywords') FROM versions v
                        JOIN dist_tags t ON t.package_id = v.package_id AND t.version = v.version
                        WHERE t.package_id = packages.id AND t.tag = 'latest')
         WHERE id = $1",
    )
    .bind(package.0)
    .execute(&mut **tx)
    .await?;
    Ok(())
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
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict("a registry with that name exists"),
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
            .execute(&self.pool)
            .await?;
        log_change(&self.pool, "registry", Some(id)).await
    }

    async fn set_default_role(&self, id: RegistryId, role: Option<Role>) -> StoreResult<()> {
        sqlx::query("UPDATE registries SET default_role = $1 WHERE id = $2")
            .bind(role.map_or("none", Role::as_str))
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        log_change(&self.pool, "registry", Some(id)).await
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
                .execute(&self.pool)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM registry_members WHERE registry_id = $1 AND user_id = $2")
                    .bind(id.0)
                    .bind(user.0)
                    .execute(&self.pool)
                    .await?;
            }
        }
        log_change(&self.pool, "registry", Some(id)).await
    }
}

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
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict("a user with that name exists"),
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
}

const TOKEN_SELECT: &str = "SELECT tokens.key, tokens.display, tokens.name AS token_name, tokens.readonly,
        tokens.cidr_whitelist, tokens.registries, tokens.packages, tokens.created_at AS token_created_at, tokens.last_used_at,
        tokens.expires_at, tokens.revoked_at, users.id AS user_id, users.name AS user_name, users.email,
        users.is_admin, users.password_hash, users.created_at AS user_created_at
     FROM tokens JOIN users ON users.id = tokens.user_id";

#[async_trait]
impl TokenStore for SqliteStore {
    async fn insert_token(&self, token: &NewToken) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tokens (key, secret_hash, display, user_id, name, readonly, cidr_whitelist, registries,
                                 packages, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $1
             WHERE ($2 IS NULL OR user_id = $2) AND revoked_at IS NULL AND (key = $3 OR secret_hash = $3)",
        )
        .bind(at)
        .bind(user.map(|u| u.0))
        .bind(key_or_hash)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        log_change(&self.pool, "credentials", None).await?;
        Ok(true)
    }
}

#[async_trait]
impl PackageStore for SqliteStore {
    async fn package(&self, registry: RegistryId, name: &PackageName) -> StoreResult<Option<PackageRecord>> {
        let mut conn = self.pool.acquire().await?;
        let Some(row) = sqlx::query(
            "SELECT id, rev, created_at, modified_at, internal FROM packages WHERE registry_id = $1 AND name = $2",
        )
        .bind(registry.0)
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await?
        else {
            return Ok(None);
        };
        let id = PackageId(row.try_get("id")?);
        let dist_tags = sqlx::query("SELECT tag, version FROM dist_tags WHERE package_id = $1 ORDER BY tag")
            .bind(id.0)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("tag")?, r.try_get("version")?)))
            .collect::<StoreResult<BTreeMap<String, String>>>()?;
        let maintainers = sqlx::query(
            "SELECT users.name, users.email FROM maintainers JOIN users ON users.id = maintainers.user_id
             WHERE maintainers.package_id = $1 ORDER BY users.name",
        )
        .bind(id.0)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            Ok(Maintainer {
                name: r.try_get("name")?,
                email: r.try_get("email")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        let versions = sqlx::query(
            "SELECT version, manifest, blob_sha512, blob_size, published_at, publisher, deprecated, unpublished_at
             FROM versions WHERE package_id = $1 ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            Ok(VersionRecord {
                version: r.try_get("version")?,
                manifest: r.try_get("manifest")?,
                blob: BlobRef {
                    sha512_hex: r.try_get("blob_sha512")?,
                    size: u64::try_from(r.try_get::<i64, _>("blob_size")?)
                        .map_err(|_| StoreError::Corrupt("negative blob size".into()))?,
                },
                published_at: r.try_get("published_at")?,
                publisher: r.try_get("publisher")?,
                deprecated: r.try_get("deprecated")?,
                unpublished_at: r.try_get("unpublished_at")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some(PackageRecord {
            id,
            name: name.clone(),
            rev: row.try_get("rev")?,
            created_at: row.try_get("created_at")?,
            modified_at: row.try_get("modified_at")?,
            internal: row.try_get("internal")?,
            dist_tags,
            maintainers,
            versions,
        }))
    }

    async fn maintainers(&self, registry: RegistryId, name: &PackageName) -> StoreResult<Option<Vec<Maintainer>>> {
        let mut conn = self.pool.acquire().await?;
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM packages WHERE registry_id = $1 AND name = $2")
            .bind(registry.0)
            .bind(name.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        let Some(id) = id else {
            return Ok(None);
        };
        let maintainers = sqlx::query(
            "SELECT users.name, users.email FROM maintainers JOIN users ON users.id = maintainers.user_id
             WHERE maintainers.package_id = $1 ORDER BY users.name",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            Ok(Maintainer {
                name: r.try_get("name")?,
                email: r.try_get("email")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some(maintainers))
    }

    async fn release_taken(&self, registry: RegistryId, name: &PackageName, release_key: &str) -> StoreResult<bool> {
        let taken: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM versions v JOIN packages p ON p.id = v.package_id
             WHERE p.registry_id = $1 AND p.name = $2 AND v.release_key = $3",
        )
        .bind(registry.0)
        .bind(name.as_str())
        .bind(release_key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(taken.is_some())
    }

    async fn package_name_folded(&self, registry: RegistryId, name: &PackageName) -> StoreResult<Option<PackageName>> {
        sqlx::query("SELECT name FROM packages WHERE registry_id = $1 AND name_folded = $2 LIMIT 1")
            .bind(registry.0)
            .bind(name.as_str().to_lowercase())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| {
                r.try_get::<String, _>("name")
                    .map_err(StoreError::from)
                    .and_then(package_name)
            })
            .transpose()
    }

    async fn insert_version(&self, new: &NewVersion) -> StoreResult<Inserted> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM packages WHERE registry_id = $1 AND name = $2")
            .bind(new.registry_id.0)
            .bind(new.name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let (package_id, created_package) = match existing {
            Some(id) => (PackageId(id), false),
            None => {
                let folded_taken: Option<String> =
                    sqlx::query_scalar("SELECT name FROM packages WHERE registry_id = $1 AND name_folded = $2")
                        .bind(new.registry_id.0)
                        .bind(new.name.as_str().to_lowercase())
                        .fetch_optional(&mut *tx)
                        .await?;
                if folded_taken.is_some() {
                    return Err(StoreError::Conflict("a package whose name differs only in case exists"));
                }
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO packages (registry_id, name, name_folded, rev, created_at, modified_at, internal)
                     VALUES ($1, $2, $3, 0, $4, $4, $5) RETURNING id",
                )
                .bind(new.registry_id.0)
                .bind(new.name.as_str())
                .bind(new.name.as_str().to_lowercase())
                .bind(now)
                .bind(new.internal_if_new)
                .fetch_one(&mut *tx)
                .await?;
                if let Some(user) = new.publisher {
                    sqlx::query("INSERT INTO maintainers (package_id, user_id) VALUES ($1, $2)")
                        .bind(id)
                        .bind(user.0)
                        .execute(&mut *tx)
                        .await?;
                }
                (PackageId(id), true)
            }
        };
        sqlx::query(
            "INSERT INTO versions (package_id, version, release_key, manifest, blob_sha512, blob_size,
                                   published_at, publisher, deprecated, source)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(package_id.0)
        .bind(&new.version)
        .bind(&new.release_key)
        .bind(&new.manifest)
        .bind(&new.blob.sha512_hex)
        .bind(i64::try_from(new.blob.size).map_err(|_| StoreError::Corrupt("blob too large".into()))?)
        .bind(new.published_at.unwrap_or(now))
        .bind(&new.publisher_name)
        .bind(&new.deprecated)
        .bind(&new.source)
        .execute(&mut *tx)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict("version exists"),
            other => other,
        })?;
        let has_latest: Option<String> =
            sqlx::query_scalar("SELECT version FROM dist_tags WHERE package_id = $1 AND tag = 'latest'")
                .bind(package_id.0)
                .fetch_optional(&mut *tx)
                .await?;
        let mut tags: Vec<&str> = new.tags.iter().map(String::as_str).collect();
        if new.claim_latest && has_latest.is_none() && !tags.contains(&"latest") {
            tags.push("latest");
        }
        for tag in tags {
            sqlx::query(
                "INSERT INTO dist_tags (package_id, tag, version) VALUES ($1, $2, $3)
                 ON CONFLICT (package_id, tag) DO UPDATE SET version = excluded.version",
            )
            .bind(package_id.0)
            .bind(tag)
            .bind(&new.version)
            .execute(&mut *tx)
            .await?;
        }
        bump_rev(&mut tx, package_id, None).await?;
        refresh_search_fields(&mut tx, package_id).await?;
        tx.commit().await?;
        Ok(Inserted {
            package_id,
            created_package,
        })
    }

    async fn set_deprecations(&self, package: PackageId, changes: &[(String, Option<String>)]) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        for (version, message) in changes {
            sqlx::query("UPDATE versions SET deprecated = $1 WHERE package_id = $2 AND version = $3")
                .bind(message)
                .bind(package.0)
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        bump_rev(&mut tx, package, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_dist_tag(&self, package: PackageId, tag: &str, version: &str) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let live: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM versions WHERE package_id = $1 AND version = $2 AND unpublished_at IS NULL",
        )
        .bind(package.0)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?;
        if live.is_none() {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO dist_tags (package_id, tag, version) VALUES ($1, $2, $3)
             ON CONFLICT (package_id, tag) DO UPDATE SET version = excluded.version",
        )
        .bind(package.0)
        .bind(tag)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        bump_rev(&mut tx, package, None).await?;
        refresh_search_fields(&mut tx, package).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_dist_tag(&self, package: PackageId, tag: &str) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM dist_tags WHERE package_id = $1 AND tag = $2")
            .bind(package.0)
            .bind(tag)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        bump_rev(&mut tx, package, None).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn unpublish_versions(
        &self,
        package: PackageId,
        expected_rev: Option<i64>,
        versions: &[String],
        dist_tags: &BTreeMap<String, String>,
    ) -> StoreResult<()> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        bump_rev(&mut tx, package, expected_rev).await?;
        for version in versions {
            sqlx::query(
                "UPDATE versions SET unpublished_at = $1 WHERE package_id = $2 AND version = $3 AND unpublished_at IS NULL",
            )
            .bind(now)
            .bind(package.0)
            .bind(version)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM dist_tags WHERE package_id = $1 AND version = $2")
                .bind(package.0)
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        for (tag, version) in dist_tags {
            sqlx::query(
                "INSERT INTO dist_tags (package_id, tag, version)
                 SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM versions WHERE package_id = $1 AND version = $3 AND unpublished_at IS NULL)
                 ON CONFLICT (package_id, tag) DO UPDATE SET version = excluded.version",
            )
            .bind(package.0)
            .bind(tag)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        }
        refresh_search_fields(&mut tx, package).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn unpublish_package(&self, package: PackageId, expected_rev: Option<i64>) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        bump_rev(&mut tx, package, expected_rev).await?;
        sqlx::query("UPDATE versions SET unpublished_at = $1 WHERE package_id = $2 AND unpublished_at IS NULL")
            .bind(now_millis())
            .bind(package.0)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM dist_tags WHERE package_id = $1")
            .bind(package.0)
            .execute(&mut *tx)
            .await?;
        refresh_search_fields(&mut tx, package).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_maintainers(
        &self,
        package: PackageId,
        expected_rev: Option<i64>,
        users: &[UserId],
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        bump_rev(&mut tx, package, expected_rev).await?;
        sqlx::query("DELETE FROM maintainers WHERE package_id = $1")
            .bind(package.0)
            .execute(&mut *tx)
            .await?;
        for user in users {
            sqlx::query("INSERT INTO maintainers (package_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(package.0)
                .bind(user.0)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn search(&self, registry: RegistryId, query: &SearchQuery) -> StoreResult<(Vec<SearchHit>, u64)> {
        // Plain substring match over name, description and keywords; `instr` keeps
        // user text out of LIKE patterns (no wildcard injection).
        let text = query.text.trim().to_lowercase();
        let filter = "FROM packages p
             WHERE p.registry_id = $1
               AND EXISTS (SELECT 1 FROM versions v WHERE v.package_id = p.id AND v.unpublished_at IS NULL)
               AND ($2 = '' OR instr(p.name_folded, $2) > 0 OR instr(lower(coalesce(p.description, '')), $2) > 0
                    OR instr(lower(coalesce(p.keywords, '')), $2) > 0)";
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) {filter}"))
            .bind(registry.0)
            .bind(&text)
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT p.name, p.description, p.keywords, p.modified_at,
                    (SELECT version FROM dist_tags t WHERE t.package_id = p.id AND t.tag = 'latest') AS latest,
                    (SELECT group_concat(u.name, ',') FROM maintainers m JOIN users u ON u.id = m.user_id
                     WHERE m.package_id = p.id) AS maintainer_names
             {filter}
             ORDER BY (p.name_folded = $2) DESC, p.name
             LIMIT $3 OFFSET $4"
        ))
        .bind(registry.0)
        .bind(&text)
        .bind(i64::from(query.size))
        .bind(i64::from(query.from))
        .fetch_all(&self.pool)
        .await?;
        let hits = rows
            .iter()
            .map(|r| {
                let keywords: Option<String> = r.try_get("keywords")?;
                Ok(SearchHit {
                    name: package_name(r.try_get("name")?)?,
                    version: r.try_get("latest")?,
                    description: r.try_get("description")?,
                    keywords: keywords
                        .and_then(|k| serde_json::from_str::<Vec<String>>(&k).ok())
                        .unwrap_or_default(),
                    maintainers: r
                        .try_get::<Option<String>, _>("maintainer_names")?
                        .map(|names| names.split(',').map(str::to_owned).collect())
                        .unwrap_or_default(),
                    modified_at: r.try_get("modified_at")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((hits, u64::try_from(total).unwrap_or(0)))
    }

    async fn set_internal(&self, package: PackageId, internal: bool) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE packages SET internal = $1 WHERE id = $2")
            .bind(internal)
            .bind(package.0)
            .execute(&mut *tx)
            .await?;
        bump_rev(&mut tx, package, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn all_packages(&self, registry: RegistryId) -> StoreResult<Vec<PackageName>> {
        sqlx::query_scalar::<_, String>(
            "SELECT p.name FROM packages p WHERE p.registry_id = $1
               AND EXISTS (SELECT 1 FROM versions v WHERE v.package_id = p.id AND v.unpublished_at IS NULL)
             ORDER BY p.name",
        )
        .bind(registry.0)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(package_name)
        .collect()
    }
}

#[async_trait]
impl UpstreamStore for SqliteStore {
    async fn upstreams(&self, registry: RegistryId) -> StoreResult<Vec<UpstreamRow>> {
        sqlx::query(
            "SELECT id, spec, token, basic_auth, internal FROM upstreams WHERE registry_id = $1 ORDER BY position, id",
        )
        .bind(registry.0)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(UpstreamRow {
                id: UpstreamId(r.try_get("id")?),
                spec: r.try_get("spec")?,
                token: r.try_get("token")?,
                basic_auth: r.try_get("basic_auth")?,
                internal: r.try_get("internal")?,
            })
        })
        .collect()
    }

    async fn add_upstream(&self, registry: RegistryId, upstream: &NewUpstream) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let next: i64 =
            sqlx::query_scalar("SELECT coalesce(max(position), 0) + 1 FROM upstreams WHERE registry_id = $1")
                .bind(registry.0)
                .fetch_one(&mut *tx)
                .await?;
        insert_upstream(&mut tx, registry, next, upstream).await?;
        registry_changed(&mut tx, registry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_upstream(&self, registry: RegistryId, spec: &str) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM upstreams WHERE registry_id = $1 AND spec = $2")
            .bind(registry.0)
            .bind(spec)
            .execute(&mut *tx)
            .await?;
        registry_changed(&mut tx, registry).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_upstreams(&self, registry: RegistryId, upstreams: &[NewUpstream]) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let specs: Vec<&str> = upstreams.iter().map(|u| u.spec.as_str()).collect();
        let existing: Vec<(i64, String)> = sqlx::query_as("SELECT id, spec FROM upstreams WHERE registry_id = $1")
            .bind(registry.0)
            .fetch_all(&mut *tx)
            .await?;
        for (id, spec) in existing {
            if !specs.contains(&spec.as_str()) {
                sqlx::query("DELETE FROM upstreams WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for (position, upstream) in (1_i64..).zip(upstreams) {
            let updated = sqlx::query(
                "UPDATE upstreams SET position = $1, token = $2, basic_auth = $3, internal = $4
                 WHERE registry_id = $5 AND spec = $6",
            )
            .bind(position)
            .bind(&upstream.token)
            .bind(&upstream.basic_auth)
            .bind(upstream.internal)
            .bind(registry.0)
            .bind(&upstream.spec)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                insert_upstream(&mut tx, registry, position, upstream).await?;
            }
        }
        registry_changed(&mut tx, registry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn stored_packument(&self, upstream: UpstreamId, name: &PackageName) -> StoreResult<Option<StoredPackument>> {
        sqlx::query(
            "SELECT body, etag, last_modified, fetched_at FROM upstream_packuments WHERE upstream_id = $1 AND name = $2",
        )
        .bind(upstream.0)
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            Ok(StoredPackument {
                body: r.try_get("body")?,
                etag: r.try_get("etag")?,
                last_modified: r.try_get("last_modified")?,
                fetched_at: r.try_get("fetched_at")?,
            })
        })
        .transpose()
    }

    async fn store_packument(
        &self,
        upstream: UpstreamId,
        name: &PackageName,
        doc: &StoredPackument,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO upstream_packuments (upstream_id, name, body, etag, last_modified, fetched_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (upstream_id, name) DO UPDATE SET body = excluded.body, etag = excluded.etag,
                 last_modified = excluded.last_modified, fetched_at = excluded.fetched_at",
        )
        .bind(upstream.0)
        .bind(name.as_str())
        .bind(&doc.body)
        .bind(&doc.etag)
        .bind(&doc.last_modified)
        .bind(doc.fetched_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn touch_packument(&self, upstream: UpstreamId, name: &PackageName, fetched_at: Millis) -> StoreResult<()> {
        sqlx::query("UPDATE upstream_packuments SET fetched_at = $1 WHERE upstream_id = $2 AND name = $3")
            .bind(fetched_at)
            .bind(upstream.0)
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_packument(&self, upstream: UpstreamId, name: &PackageName) -> StoreResult<()> {
        sqlx::query("DELETE FROM upstream_packuments WHERE upstream_id = $1 AND name = $2")
            .bind(upstream.0)
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Upstream lists changed: every package of the registry may look different.
async fn registry_changed(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, registry: RegistryId) -> StoreResult<()> {
    log_change(&mut **tx, "registry", Some(registry)).await
}

async fn log_change<'e, E: sqlx::Executor<'e, Database = sqlx::Sqlite>>(
    executor: E,
    kind: &str,
    registry: Option<RegistryId>,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO changes (kind, registry_id, name, at) VALUES ($1, $2, NULL, $3)")
        .bind(kind)
        .bind(registry.map(|r| r.0))
        .bind(now_millis())
        .execute(executor)
        .await?;
    Ok(())
}

async fn insert_upstream(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    registry: RegistryId,
    position: i64,
    upstream: &NewUpstream,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO upstreams (registry_id, position, spec, token, basic_auth, internal) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(registry.0)
    .bind(position)
    .bind(&upstream.spec)
    .bind(&upstream.token)
    .bind(&upstream.basic_auth)
    .bind(upstream.internal)
    .execute(&mut **tx)
    .await
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict("the registry already has that upstream"),
        other => other,
    })?;
    Ok(())
}

#[async_trait]
impl ChangeLog for SqliteStore {
    async fn last_change(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM changes")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn changes_since(&self, seq: i64) -> StoreResult<Vec<Change>> {
        sqlx::query("SELECT seq, kind, name FROM changes WHERE seq > $1 ORDER BY seq LIMIT 10000")
            .bind(seq)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let kind: String = r.try_get("kind")?;
                let name: Option<String> = r.try_get("name")?;
                let kind = match (kind.as_str(), name) {
                    ("package", Some(name)) => ChangeKind::Package(package_name(name)?),
                    ("credentials", _) => ChangeKind::Credentials,
                    _ => ChangeKind::Registry,
                };
                Ok(Change {
                    seq: r.try_get("seq")?,
                    kind,
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
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, registry, package, version, detail, client_addr)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(now_millis())
        .bind(&entry.actor)
        .bind(entry.action)
        .bind(&entry.registry)
        .bind(&entry.package)
        .bind(&entry.version)
        .bind(&entry.detail)
        .bind(&entry.client_addr)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<(Millis, AuditEntryOwned)>> {
        sqlx::query(
            "SELECT at, actor, action, registry, package, version, detail, client_addr
             FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("at")?,
                AuditEntryOwned {
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    registry: r.try_get("registry")?,
                    package: r.try_get("package")?,
                    version: r.try_get("version")?,
                    detail: r.try_get("detail")?,
                    client_addr: r.try_get("client_addr")?,
                },
            ))
        })
        .collect()
    }
}
