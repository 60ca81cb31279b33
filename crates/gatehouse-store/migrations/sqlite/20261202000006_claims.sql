-- Names a registry admin claimed for a registry: only a claimed name may be
-- published there while one of the registry's upstreams serves it (otherwise any
-- publisher could hide a public package from everyone: dependency confusion from
-- the inside). A pattern is a package name or a whole scope, `@scope/*`.
CREATE TABLE claims (
    registry_id INTEGER NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    pattern     TEXT    NOT NULL,
    claimed_by  TEXT,
    claimed_at  INTEGER NOT NULL,
    CONSTRAINT claims_registry_id_pattern_key PRIMARY KEY (registry_id, pattern)
);
