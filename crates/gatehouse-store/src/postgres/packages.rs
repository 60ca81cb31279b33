//! Packages, versions, dist-tags, maintainers, search.

use super::*;

/// Bumps `rev` and `modified_at`; with `expected_rev`, refuses a stale caller. (The
/// `UPDATE` waits for a concurrent writer and then checks `rev` again, on the row as
/// that writer left it.) The caller logs the package's change at commit.
async fn bump_rev(tx: &mut Tx<'_>, package: PackageId, expected_rev: Option<i64>) -> StoreResult<()> {
    let updated = sqlx::query(
        "UPDATE packages SET rev = rev + 1, modified_at = $1 WHERE id = $2 AND ($3::bigint IS NULL OR rev = $3)",
    )
    .bind(now_millis())
    .bind(package.0)
    .bind(expected_rev)
    .execute(&mut **tx)
    .await?;
    match updated.rows_affected() {
        1 => Ok(()),
        _ if expected_rev.is_some() => Err(StoreError::Stale),
        _ => Err(StoreError::NotFound),
    }
}

/// Copies the search fields of the version `latest` points at onto the package.
async fn refresh_search_fields(tx: &mut Tx<'_>, package: PackageId) -> StoreResult<()> {
    sqlx::query(&format!(
        "UPDATE packages SET {SEARCH_FIELDS_FROM_LATEST} WHERE id = $1"
    ))
    .bind(package.0)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Everything a new version writes once its package row exists and is locked (what
/// SQLite's `record_version!` does in one batch); its change is logged at commit.
async fn record_version(tx: &mut Tx<'_>, package: PackageId, new: &NewVersion, now: Millis) -> StoreResult<()> {
    let size = i64::try_from(new.blob.size).map_err(|_| StoreError::Corrupt("blob too large".into()))?;
    // The only unique key here is the version's (tags are upserts): a conflict is
    // `VersionExists`, by the constraint's name.
    sqlx::query(
        "INSERT INTO versions (package_id, version, release_key, manifest, blob_sha512, blob_size, published_at,
                               publisher, deprecated, source, facts, install_scripts, attested, attestations)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(package.0)
    .bind(&new.version)
    .bind(&new.release_key)
    .bind(&new.manifest)
    .bind(&new.blob.sha512_hex)
    .bind(size)
    .bind(new.published_at.unwrap_or(now))
    .bind(&new.publisher_name)
    .bind(&new.deprecated)
    .bind(&new.source)
    .bind(&new.facts)
    .bind(new.install_scripts)
    .bind(new.attested)
    .bind(&new.attestations)
    .execute(&mut **tx)
    .await?;
    // DISTINCT: an upsert may not touch one row twice in a statement.
    sqlx::query(
        "INSERT INTO dist_tags (package_id, tag, version)
         SELECT $1, tag, $2 FROM (SELECT DISTINCT unnest($3::text[]) AS tag) AS tags
         ON CONFLICT (package_id, tag) DO UPDATE SET version = excluded.version",
    )
    .bind(package.0)
    .bind(&new.version)
    .bind(&new.tags)
    .execute(&mut **tx)
    .await?;
    if new.claim_latest {
        sqlx::query(
            "INSERT INTO dist_tags (package_id, tag, version) VALUES ($1, 'latest', $2)
             ON CONFLICT (package_id, tag) DO NOTHING",
        )
        .bind(package.0)
        .bind(&new.version)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query(&format!(
        "UPDATE packages SET rev = rev + 1, modified_at = $2, {SEARCH_FIELDS_FROM_LATEST} WHERE id = $1"
    ))
    .bind(package.0)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    insert_audit(&mut **tx, now, &new.audit).await?;
    if let Some(bytes) = &new.journal {
        sqlx::query("INSERT INTO blob_journal (sha512, bytes) VALUES ($1, $2)")
            .bind(&new.blob.sha512_hex)
            .bind(bytes.as_ref())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The package a new version goes into, locked: found, or created (then `true`).
async fn package_for(tx: &mut Tx<'_>, new: &NewVersion, now: Millis) -> StoreResult<(PackageId, bool)> {
    if let Some(package) = new.known_package {
        return match lock_package(tx, package).await? {
            true => Ok((package, false)),
            false => Err(StoreError::NotFound),
        };
    }
    let folded = new.name.as_str().to_lowercase();
    // Creators of one folded name take turns: the check below sees the package the
    // previous one created (each statement reads what is committed when it starts).
    advisory_lock(tx, Lock::PackageName, &format!("{}/{folded}", new.registry_id.0)).await?;
    let existing: Option<i64> =
        sqlx::query_scalar("SELECT id FROM packages WHERE registry_id = $1 AND name = $2 FOR NO KEY UPDATE")
            .bind(new.registry_id.0)
            .bind(new.name.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    if let Some(id) = existing {
        return Ok((PackageId(id), false));
    }
    let folded_taken: Option<String> =
        sqlx::query_scalar("SELECT name FROM packages WHERE registry_id = $1 AND name_folded = $2 LIMIT 1")
            .bind(new.registry_id.0)
            .bind(&folded)
            .fetch_optional(&mut **tx)
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
    .bind(&folded)
    .bind(now)
    .bind(new.internal_if_new)
    .fetch_one(&mut **tx)
    .await?;
    if let Some(user) = new.publisher {
        sqlx::query("INSERT INTO maintainers (package_id, user_id) VALUES ($1, $2)")
            .bind(id)
            .bind(user.0)
            .execute(&mut **tx)
            .await?;
    }
    Ok((PackageId(id), true))
}

#[async_trait]
impl PackageStore for PostgresStore {
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
        // One snapshot for the package's four reads, so they agree with each other
        // while writers go on (SQLite's readers have that from WAL).
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let Some(row) = sqlx::query(
            "SELECT id, rev, created_at, modified_at, internal FROM packages WHERE registry_id = $1 AND name = $2",
        )
        .bind(registry.0)
        .bind(name.as_str())
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let id = PackageId(row.try_get("id")?);
        let dist_tags = sqlx::query("SELECT tag, version FROM dist_tags WHERE package_id = $1 ORDER BY tag")
            .bind(id.0)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("tag")?, r.try_get("version")?)))
            .collect::<StoreResult<BTreeMap<String, String>>>()?;
        let maintainers = maintainers_of(&mut tx, id).await?;
        let versions = sqlx::query(
            "SELECT version, manifest, blob_sha512, blob_size, published_at, publisher, deprecated, unpublished_at,
                    source, facts
             FROM versions WHERE package_id = $1 ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(version_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
        tx.commit().await?;
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
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM versions v JOIN packages p ON p.id = v.package_id
                            WHERE p.registry_id = $1 AND p.name = $2 AND v.release_key = $3)",
        )
        .bind(registry.0)
        .bind(name.as_str())
        .bind(release_key)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn package_name_folded(&self, registry: RegistryId, name: &PackageName) -> StoreResult<Option<PackageName>> {
        sqlx::query_scalar::<_, String>("SELECT name FROM packages WHERE registry_id = $1 AND name_folded = $2 LIMIT 1")
            .bind(registry.0)
            .bind(name.as_str().to_lowercase())
            .fetch_optional(&self.pool)
            .await?
            .map(package_name)
            .transpose()
    }

    async fn insert_version(&self, new: &NewVersion) -> StoreResult<Inserted> {
        self.write(move || {
            Box::pin(async move {
                let now = now_millis();
                let mut tx = self.begin().await?;
                let (package_id, created_package) = package_for(&mut tx, new, now).await?;
                record_version(&mut tx, package_id, new, now).await?;
                self.commit(tx, &[Logged::Package(package_id)]).await?;
                Ok(Inserted {
                    package_id,
                    created_package,
                })
            })
        })
        .await
    }

    async fn set_deprecations(&self, package: PackageId, changes: &[(String, Option<String>)]) -> StoreResult<()> {
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
                lock_package(&mut tx, package).await?;
                for (version, message) in changes {
                    sqlx::query("UPDATE versions SET deprecated = $1 WHERE package_id = $2 AND version = $3")
                        .bind(message)
                        .bind(package.0)
                        .bind(version)
                        .execute(&mut *tx)
                        .await?;
                }
                bump_rev(&mut tx, package, None).await?;
                self.commit(tx, &[Logged::Package(package)]).await
            })
        })
        .await
    }

    async fn set_dist_tag(&self, package: PackageId, tag: &str, version: &str) -> StoreResult<()> {
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
                lock_package(&mut tx, package).await?;
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
                self.commit(tx, &[Logged::Package(package)]).await
            })
        })
        .await
    }

    async fn remove_dist_tag(&self, package: PackageId, tag: &str) -> StoreResult<bool> {
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
                lock_package(&mut tx, package).await?;
                let done = sqlx::query("DELETE FROM dist_tags WHERE package_id = $1 AND tag = $2")
                    .bind(package.0)
                    .bind(tag)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                bump_rev(&mut tx, package, None).await?;
                self.commit(tx, &[Logged::Package(package)]).await?;
                Ok(true)
            })
        })
        .await
    }

    async fn unpublish_versions(
        &self,
        package: PackageId,
        expected_rev: Option<i64>,
        versions: &[String],
        dist_tags: &BTreeMap<String, String>,
    ) -> StoreResult<()> {
        self.write(move || {
            Box::pin(async move {
                let now = now_millis();
                let mut tx = self.begin().await?;
                bump_rev(&mut tx, package, expected_rev).await?;
                for version in versions {
                    sqlx::query(
                        "UPDATE versions SET unpublished_at = $1
                         WHERE package_id = $2 AND version = $3 AND unpublished_at IS NULL",
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
                         SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM versions
                             WHERE package_id = $1 AND version = $3 AND unpublished_at IS NULL)
                         ON CONFLICT (package_id, tag) DO UPDATE SET version = excluded.version",
                    )
                    .bind(package.0)
                    .bind(tag)
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
                }
                refresh_search_fields(&mut tx, package).await?;
                self.commit(tx, &[Logged::Package(package)]).await
            })
        })
        .await
    }

    async fn unpublish_package(&self, package: PackageId, expected_rev: Option<i64>) -> StoreResult<()> {
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
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
                self.commit(tx, &[Logged::Package(package)]).await
            })
        })
        .await
    }

    async fn set_maintainers(
        &self,
        package: PackageId,
        expected_rev: Option<i64>,
        users: &[UserId],
    ) -> StoreResult<()> {
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
                bump_rev(&mut tx, package, expected_rev).await?;
                sqlx::query("DELETE FROM maintainers WHERE package_id = $1")
                    .bind(package.0)
                    .execute(&mut *tx)
                    .await?;
                let ids: Vec<i64> = users.iter().map(|u| u.0).collect();
                sqlx::query(
                    "INSERT INTO maintainers (package_id, user_id) SELECT $1, unnest($2::bigint[])
                     ON CONFLICT DO NOTHING",
                )
                .bind(package.0)
                .bind(ids)
                .execute(&mut *tx)
                .await?;
                self.commit(tx, &[Logged::Package(package)]).await
            })
        })
        .await
    }

    async fn search(&self, registry: RegistryId, query: &SearchQuery) -> StoreResult<(Vec<SearchHit>, u64)> {
        // As SQLite's: a plain substring match (`strpos`, so user text is never a
        // LIKE pattern) over name, description and keywords, lower-cased as SQLite's
        // `lower()` does (ASCII only).
        let text = query.text.trim().to_lowercase();
        let filter = concat!(
            "FROM packages p
             WHERE p.registry_id = $1
               AND EXISTS (SELECT 1 FROM versions v WHERE v.package_id = p.id AND v.unpublished_at IS NULL)
               AND ($2 = '' OR strpos(p.name_folded, $2) > 0 OR strpos(",
            ascii_lower!("coalesce(p.description, '')"),
            ", $2) > 0 OR strpos(",
            ascii_lower!("coalesce(p.keywords, '')"),
            ", $2) > 0)"
        );
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) {filter}"))
            .bind(registry.0)
            .bind(&text)
            .fetch_one(&self.pool)
            .await?;
        // The page first, on the packages table alone; then its rows' latest version
        // and maintainers. An exact name first; without a text, the most recently changed.
        let order = "(p.name_folded = $2) DESC, CASE WHEN $2 = '' THEN -p.modified_at ELSE 0 END, p.name";
        let rows = sqlx::query(&format!(
            "WITH page AS (SELECT p.id, row_number() OVER (ORDER BY {order}) AS rank {filter}
                           ORDER BY {order} LIMIT $3 OFFSET $4)
             SELECT p.name, p.description, p.keywords, p.modified_at,
                    (SELECT version FROM dist_tags t WHERE t.package_id = p.id AND t.tag = 'latest') AS latest,
                    (SELECT string_agg(u.name, ',' ORDER BY m.user_id) FROM maintainers m
                     JOIN users u ON u.id = m.user_id WHERE m.package_id = p.id) AS maintainer_names
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
        self.write(move || {
            Box::pin(async move {
                let mut tx = self.begin().await?;
                lock_package(&mut tx, package).await?;
                sqlx::query("UPDATE packages SET internal = $1 WHERE id = $2")
                    .bind(internal)
                    .bind(package.0)
                    .execute(&mut *tx)
                    .await?;
                bump_rev(&mut tx, package, None).await?;
                self.commit(tx, &[Logged::Package(package)]).await
            })
        })
        .await
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
        // Versions stored before the two columns have them NULL: read their manifests,
        // as SQLite does (`->>` is NULL for a JSON null, as `json_extract`).
        sqlx::query(
            "SELECT v.version, v.published_at, v.source,
                    coalesce(v.install_scripts,
                             (v.manifest::json -> 'scripts' ->> 'preinstall') IS NOT NULL
                             OR (v.manifest::json -> 'scripts' ->> 'install') IS NOT NULL
                             OR (v.manifest::json -> 'scripts' ->> 'postinstall') IS NOT NULL
                             OR coalesce(CASE json_typeof(v.manifest::json -> 'hasInstallScript')
                                             WHEN 'boolean' THEN (v.manifest::json ->> 'hasInstallScript')::boolean
                                             WHEN 'number' THEN (v.manifest::json ->> 'hasInstallScript')::numeric = 1
                                         END, false)) AS install_scripts,
                    coalesce(v.attested,
                             coalesce(json_typeof(v.manifest::json -> 'dist' -> 'attestations') = 'object', false))
                        AS attested
             FROM versions v JOIN packages p ON p.id = v.package_id
             WHERE p.registry_id = $1 AND p.name = $2 AND v.unpublished_at IS NULL
             ORDER BY v.id",
        )
        .bind(registry.0)
        .bind(name.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(VersionHistory {
                version: r.try_get("version")?,
                published_at: r.try_get("published_at")?,
                source: r.try_get("source")?,
                install_scripts: r.try_get("install_scripts")?,
                attested: r.try_get("attested")?,
            })
        })
        .collect()
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

async fn maintainers_of(tx: &mut Tx<'_>, package: PackageId) -> StoreResult<Vec<Maintainer>> {
    sqlx::query(
        "SELECT users.name, users.email FROM maintainers JOIN users ON users.id = maintainers.user_id
         WHERE maintainers.package_id = $1 ORDER BY users.name",
    )
    .bind(package.0)
    .fetch_all(&mut **tx)
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
async fn point_tag(tx: &mut Tx<'_>, package: PackageId, tag: &str, version: &str) -> StoreResult<()> {
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
