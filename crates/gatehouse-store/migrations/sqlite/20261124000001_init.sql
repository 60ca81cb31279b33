-- Gatehouse metadata, SQLite flavour. The PostgreSQL twin keeps the same tables,
-- columns and constraints; times are milliseconds since the Unix epoch (BIGINT).

CREATE TABLE registries (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    public_read BOOLEAN NOT NULL DEFAULT FALSE,
    -- What every logged-in user may do here unless granted more: none, read or publish.
    default_role TEXT   NOT NULL DEFAULT 'publish',
    created_at  BIGINT  NOT NULL
);

-- Per-user roles on one registry: read, publish or admin.
CREATE TABLE registry_members (
    registry_id INTEGER NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT    NOT NULL,
    PRIMARY KEY (registry_id, user_id)
);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    email         TEXT,
    password_hash TEXT    NOT NULL,
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT  NOT NULL
);

CREATE TABLE tokens (
    id             INTEGER PRIMARY KEY,
    -- Public identifier shown by `npm token list` and used to revoke.
    key            TEXT    NOT NULL UNIQUE,
    -- SHA-256 of the secret; the secret itself is never stored.
    secret_hash    TEXT    NOT NULL UNIQUE,
    -- First characters of the secret, for lists ("gth_AbCd…").
    display        TEXT    NOT NULL,
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT,
    readonly       BOOLEAN NOT NULL DEFAULT FALSE,
    -- JSON arrays; NULL means no limit.
    cidr_whitelist TEXT,
    registries     TEXT,
    packages       TEXT,
    created_at     BIGINT  NOT NULL,
    last_used_at   BIGINT,
    expires_at     BIGINT,
    revoked_at     BIGINT
);
CREATE INDEX tokens_user_id_idx ON tokens (user_id);

CREATE TABLE packages (
    id          INTEGER PRIMARY KEY,
    registry_id INTEGER NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    -- Lower-cased name: a new package may not differ from an existing one by case only.
    name_folded TEXT    NOT NULL,
    -- Bumped on every change; the packument's `_rev` and cache key derive from it.
    rev         BIGINT  NOT NULL DEFAULT 1,
    created_at  BIGINT  NOT NULL,
    modified_at BIGINT  NOT NULL,
    -- Search fields, copied from the `latest` version's manifest.
    description TEXT,
    keywords    TEXT,
    internal    BOOLEAN NOT NULL DEFAULT TRUE,
    CONSTRAINT packages_registry_id_name_key UNIQUE (registry_id, name)
);
CREATE INDEX packages_registry_id_name_folded_idx ON packages (registry_id, name_folded);

CREATE TABLE versions (
    id             INTEGER PRIMARY KEY,
    package_id     INTEGER NOT NULL REFERENCES packages (id) ON DELETE CASCADE,
    version        TEXT    NOT NULL,
    -- The version without build metadata: npm treats 1.0.0+a and 1.0.0+b as one version.
    release_key    TEXT    NOT NULL,
    -- The version manifest as served, without dist.tarball (built from the public URL).
    manifest       TEXT    NOT NULL,
    blob_sha512    TEXT    NOT NULL,
    blob_size      BIGINT  NOT NULL,
    published_at   BIGINT  NOT NULL,
    publisher      TEXT,
    deprecated     TEXT,
    -- Unpublished versions keep their row: `time` keeps them and the number is never reused.
    unpublished_at BIGINT,
    source         TEXT    NOT NULL,
    CONSTRAINT versions_package_id_release_key_key UNIQUE (package_id, release_key)
);
CREATE INDEX versions_blob_sha512_idx ON versions (blob_sha512);

CREATE TABLE dist_tags (
    package_id INTEGER NOT NULL REFERENCES packages (id) ON DELETE CASCADE,
    tag        TEXT    NOT NULL,
    version    TEXT    NOT NULL,
    PRIMARY KEY (package_id, tag)
);

CREATE TABLE maintainers (
    package_id INTEGER NOT NULL REFERENCES packages (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (package_id, user_id)
);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT,
    action      TEXT   NOT NULL,
    registry    TEXT,
    package     TEXT,
    version     TEXT,
    detail      TEXT,
    client_addr TEXT
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
