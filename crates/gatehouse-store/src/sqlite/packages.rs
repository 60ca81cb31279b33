//! Packages, versions, dist-tags, maintainers, search.

use super::*;

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
        "INSERT INTO changes (kind, registry_id, name, at, writer)
         SELECT 'package', registry_id, name, $1, (SELECT id FROM temp.writer_identity) FROM packages WHERE id = $2",
    )
    .bind(now_millis())
    .bind(package.0)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Copies the search fields of the version `latest` points at onto the package.
async fn refresh_search_fields(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, package: PackageId) -> StoreResult<()> {
    sqlx::query(concat!(
        "UPDATE packages SET ",
        search_fields_from_latest!(),
        " WHERE id = $1"
    ))
    .bind(package.0)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl PackageStore for SqliteStore {
    async fn blob_references(&self) -> StoreResult<Vec<BlobReference>> {
        sqlx::query(
            "SELECT r.name AS registry, p.name AS package, v.version, v.blob_sha512, v.blob_size
             FROM versions v JOIN packages p ON p.id = v.package_id JOIN registries r ON r.id = p.registry_id
             ORDER BY r.name, p.name, v.id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(BlobReference {
                registry: row.try_get("registry")?,
                package: row.try_get("package")?,
                version: row.try_get("version")?,
                blob: BlobRef {
                    sha512_hex: row.try_get("blob_sha512")?,
                    size: u64::try_from(row.try_get::<i64, _>("blob_size")?).unwrap_or(0),
                },
            })
        })
        .collect()
    }

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
        let maintainers = maintainers_of(&mut conn, id).await?;
        let versions = sqlx::query(
            "SELECT version, manifest, blob_sha512, blob_size, published_at, publisher, deprecated, unpublished_at,
                    source, facts
             FROM versions WHERE package_id = $1 ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(version_from_row)
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

    async fn publish_target(
        &self,
        registry: RegistryId,
        name: &PackageName,
        release_key: &str,
    ) -> StoreResult<Option<PublishTarget>> {
        // One query: a package row with no maintainer still yields one row (NULL user).
        let rows = sqlx::query(
            "SELECT packages.id, users.name, users.email,
                    EXISTS (SELECT 1 FROM versions v
                            WHERE v.package_id = packages.id AND v.release_key = $3) AS release_taken
             FROM packages
             LEFT JOIN maintainers ON maintainers.package_id = packages.id
             LEFT JOIN users ON users.id = maintainers.user_id
             WHERE packages.registry_id = $1 AND packages.name = $2
             ORDER BY users.name",
        )
        .bind(registry.0)
        .bind(name.as_str())
        .bind(release_key)
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut maintainers = Vec::new();
        for row in &rows {
            if let Some(name) = row.try_get::<Option<String>, _>("name")? {
                maintainers.push(Maintainer {
                    name,
                    email: row.try_get("email")?,
                });
            }
        }
        Ok(Some(PublishTarget {
            package: PackageId(first.try_get("id")?),
            maintainers,
            release_taken: first.try_get("release_taken")?,
        }))
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
        if let Some(package_id) = new.known_package {
            self.versions.record(package_id, new).await?;
            return Ok(Inserted {
                package_id,
                created_package: false,
            });
        }
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
                    return Err(Conflict::NameTakenIgnoringCase.into());
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
        versions::VersionParams::new(package_id, new)?
            .bind(sqlx::query(record_version!()), now)
            .execute(&mut *tx)
            .await
            .map_err(versions::conflict)?;
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
        point_tag(&mut tx, package, tag, version).await?;
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
        // The page is chosen first, on the packages table alone; only its rows get
        // their latest version and maintainers (computing them for every match
        // before sorting cost ~40 ms with 10,000 packages). An exact name comes
        // first; without a text, the most recently changed.
        let order = "(p.name_folded = $2) DESC, CASE WHEN $2 = '' THEN -p.modified_at ELSE 0 END, p.name";
        let rows = sqlx::query(&format!(
            "WITH page AS (SELECT p.id, row_number() OVER (ORDER BY {order}) AS rank {filter}
                           ORDER BY {order} LIMIT $3 OFFSET $4)
             SELECT p.name, p.description, p.keywords, p.modified_at,
                    (SELECT version FROM dist_tags t WHERE t.package_id = p.id AND t.tag = 'latest') AS latest,
                    (SELECT group_concat(u.name, ',') FROM maintainers m JOIN users u ON u.id = m.user_id
                     WHERE m.package_id = p.id) AS maintainer_names
             FROM page JOIN packages p ON p.id = page.id
             ORDER BY page.rank"
        ))
        .bind(registry.0)
        .bind(&text)
        .bind(i64::from(query.size))
        .bind(i64::from(query.from))
        .fetch_all(&self.pool)
        .await?;
        let hits = rows.iter().map(search_hit_from_row).collect::<StoreResult<Vec<_>>>()?;
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

    async fn attestations(
        &self,
        registry: RegistryId,
        name: &PackageName,
        version: &str,
    ) -> StoreResult<Option<String>> {
        let found: Option<Option<String>> = sqlx::query_scalar(
            "SELECT v.attestations FROM versions v JOIN packages p ON p.id = v.package_id
             WHERE p.registry_id = $1 AND p.name = $2 AND v.version = $3 AND v.unpublished_at IS NULL",
        )
        .bind(registry.0)
        .bind(name.as_str())
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.flatten())
    }

    async fn version_history(&self, registry: RegistryId, name: &PackageName) -> StoreResult<Vec<VersionHistory>> {
        // One row (a JSON array) rather than a row per version: a publish reads this
        // for packages of thousands of versions, and rows cross threads one by one.
        // Versions stored before the two columns have them NULL: read their manifests.
        let rows: Option<String> = sqlx::query_scalar(
            "SELECT json_group_array(json_array(
                        v.version, v.published_at, v.source,
                        coalesce(v.install_scripts,
                                 coalesce(json_extract(v.manifest, '$.scripts.preinstall'),
                                          json_extract(v.manifest, '$.scripts.install'),
                                          json_extract(v.manifest, '$.scripts.postinstall')) IS NOT NULL
                                 OR coalesce(json_extract(v.manifest, '$.hasInstallScript') = 1, 0)),
                        coalesce(v.attested, coalesce(json_type(v.manifest, '$.dist.attestations') = 'object', 0))))
             FROM versions v JOIN packages p ON p.id = v.package_id
             WHERE p.registry_id = $1 AND p.name = $2 AND v.unpublished_at IS NULL",
        )
        .bind(registry.0)
        .bind(name.as_str())
        .fetch_one(&self.pool)
        .await?;
        // SQLite's booleans are the integers 0 and 1.
        let rows: Vec<(String, Millis, String, u8, u8)> =
            serde_json::from_str(rows.as_deref().unwrap_or("[]")).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(rows
            .into_iter()
            .map(
                |(version, published_at, source, install_scripts, attested)| VersionHistory {
                    version,
                    published_at,
                    source,
                    install_scripts: install_scripts != 0,
                    attested: attested != 0,
                },
            )
            .collect())
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

async fn maintainers_of(conn: &mut sqlx::SqliteConnection, package: PackageId) -> StoreResult<Vec<Maintainer>> {
    sqlx::query(
        "SELECT users.name, users.email FROM maintainers JOIN users ON users.id = maintainers.user_id
         WHERE maintainers.package_id = $1 ORDER BY users.name",
    )
    .bind(package.0)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Maintainer {
            name: r.try_get("name")?,
            email: r.try_get("email")?,
        })
    })
    .collect()
}

/// Points `tag` at `version`, moving it if it exists.
async fn point_tag(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    package: PackageId,
    tag: &str,
    version: &str,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO dist_tags (package_id, tag, version) VALUES ($1, $2, $3)
         ON CONFLICT (package_id, tag) DO UPDATE SET version = excluded.version",
    )
    .bind(package.0)
    .bind(tag)
    .bind(version)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
