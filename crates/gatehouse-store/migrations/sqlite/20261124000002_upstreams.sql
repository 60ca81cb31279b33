-- Upstreams: where a registry pulls what it does not hold, in order.
CREATE TABLE upstreams (
    id          INTEGER PRIMARY KEY,
    registry_id INTEGER NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    -- "npmjs", a remote npm registry URL, or "registry:NAME" (another registry here).
    spec        TEXT    NOT NULL,
    -- Credentials for a remote registry: a bearer token or "user:password".
    token       TEXT,
    basic_auth  TEXT,
    -- Trusted with packages flagged internal (a company's own remote registry).
    internal    BOOLEAN NOT NULL DEFAULT FALSE,
    CONSTRAINT upstreams_registry_id_spec_key UNIQUE (registry_id, spec)
);

-- The last copy of each upstream packument: revalidated with its validators, and
-- served when the upstream is down (stale-if-error).
CREATE TABLE upstream_packuments (
    upstream_id   INTEGER NOT NULL REFERENCES upstreams (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    body          BLOB    NOT NULL,
    etag          TEXT,
    last_modified TEXT,
    fetched_at    BIGINT  NOT NULL,
    PRIMARY KEY (upstream_id, name)
);

-- A log of changes, so every server process sharing this database (and the CLI)
-- can drop what it caches: kind 'package' (one name), 'registry' (a registry's
-- settings, roles or upstreams) or 'credentials' (tokens revoked).
CREATE TABLE changes (
    seq         INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL,
    registry_id INTEGER,
    name        TEXT,
    at          BIGINT  NOT NULL
);
