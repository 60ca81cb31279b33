-- Gatehouse metadata, PostgreSQL flavour: the SQLite schema as of its migration
-- 20261203000013, folded into one. It is numbered like that one so that "schema
-- version N" means the same tables in both; every later SQLite migration needs a
-- twin here with the same number and name.
--
-- Same tables, columns, constraints and indexes as SQLite, so both backends read and
-- write the same representation: times are milliseconds since the Unix epoch
-- (BIGINT), every integer is BIGINT (sqlx decodes i64 from INT8 only), JSON is TEXT
-- (stored and returned as written), booleans are BOOLEAN. Text is `COLLATE "C"`:
-- byte order, as SQLite's BINARY, so every ORDER BY gives the same order whatever the
-- database's locale. Unique constraints are named: the store maps a violation to its
-- typed `Conflict` by the constraint's name.

CREATE TABLE registries (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT COLLATE "C" NOT NULL CONSTRAINT registries_name_key UNIQUE,
    public_read  BOOLEAN NOT NULL DEFAULT FALSE,
    -- What every logged-in user may do here unless granted more: none, read or publish.
    default_role TEXT COLLATE "C" NOT NULL DEFAULT 'publish',
    created_at   BIGINT  NOT NULL
);

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT COLLATE "C" NOT NULL CONSTRAINT users_name_key UNIQUE,
    email         TEXT COLLATE "C",
    password_hash TEXT COLLATE "C" NOT NULL,
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT  NOT NULL,
    -- A disabled user can't log in, and their tokens stop working at once.
    disabled_at   BIGINT
);

-- Per-user roles on one registry: read, publish or admin.
CREATE TABLE registry_members (
    registry_id BIGINT NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (registry_id, user_id)
);

CREATE TABLE tokens (
    id             BIGSERIAL PRIMARY KEY,
    -- Public identifier shown by `npm token list` and used to revoke.
    key            TEXT COLLATE "C" NOT NULL CONSTRAINT tokens_key_key UNIQUE,
    -- SHA-256 of the secret; the secret itself is never stored.
    secret_hash    TEXT COLLATE "C" NOT NULL CONSTRAINT tokens_secret_hash_key UNIQUE,
    -- First characters of the secret, for lists ("gth_AbCd…").
    display        TEXT COLLATE "C" NOT NULL,
    user_id        BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT COLLATE "C",
    readonly       BOOLEAN NOT NULL DEFAULT FALSE,
    -- JSON arrays; NULL means no limit.
    cidr_whitelist TEXT COLLATE "C",
    registries     TEXT COLLATE "C",
    packages       TEXT COLLATE "C",
    created_at     BIGINT  NOT NULL,
    last_used_at   BIGINT,
    expires_at     BIGINT,
    revoked_at     BIGINT,
    -- A token exchanged by trusted publishing: who published (`PublishedBy`, JSON).
    published_by   TEXT COLLATE "C"
);
CREATE INDEX tokens_user_id_idx ON tokens (user_id);

CREATE TABLE packages (
    id          BIGSERIAL PRIMARY KEY,
    registry_id BIGINT  NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    name        TEXT COLLATE "C" NOT NULL,
    -- Lower-cased name: a new package may not differ from an existing one by case only.
    name_folded TEXT COLLATE "C" NOT NULL,
    -- Bumped on every change; the packument's `_rev` and cache key derive from it.
    rev         BIGINT  NOT NULL DEFAULT 1,
    created_at  BIGINT  NOT NULL,
    modified_at BIGINT  NOT NULL,
    -- Search fields, copied from the `latest` version's manifest.
    description TEXT COLLATE "C",
    keywords    TEXT COLLATE "C",
    internal    BOOLEAN NOT NULL DEFAULT TRUE,
    CONSTRAINT packages_registry_id_name_key UNIQUE (registry_id, name)
);
CREATE INDEX packages_registry_id_name_folded_idx ON packages (registry_id, name_folded);

CREATE TABLE versions (
    id              BIGSERIAL PRIMARY KEY,
    package_id      BIGINT NOT NULL REFERENCES packages (id) ON DELETE CASCADE,
    version         TEXT COLLATE "C" NOT NULL,
    -- The version without build metadata: npm treats 1.0.0+a and 1.0.0+b as one version.
    release_key     TEXT COLLATE "C" NOT NULL,
    -- The version manifest as served, without dist.tarball (built from the public URL).
    manifest        TEXT COLLATE "C" NOT NULL,
    blob_sha512     TEXT COLLATE "C" NOT NULL,
    blob_size       BIGINT NOT NULL,
    published_at    BIGINT NOT NULL,
    publisher       TEXT COLLATE "C",
    deprecated      TEXT COLLATE "C",
    -- Unpublished versions keep their row: `time` keeps them and the number is never reused.
    unpublished_at  BIGINT,
    source          TEXT COLLATE "C" NOT NULL,
    -- What the tarball showed when it was inspected. NULL for versions stored before.
    facts           TEXT COLLATE "C",
    -- Whether it runs install scripts and carries provenance attestations; NULL:
    -- read from the manifest.
    install_scripts BOOLEAN,
    attested        BOOLEAN,
    -- The verified Sigstore bundles served for it (JSON), or NULL.
    attestations    TEXT COLLATE "C",
    CONSTRAINT versions_package_id_release_key_key UNIQUE (package_id, release_key)
);
CREATE INDEX versions_blob_sha512_idx ON versions (blob_sha512);
-- Versions are looked up by their number; unique since its release key is.
CREATE UNIQUE INDEX versions_package_id_version_key ON versions (package_id, version);
-- "Does this package have a live version?", from the index alone.
CREATE INDEX versions_live_package_idx ON versions (package_id) WHERE unpublished_at IS NULL;

CREATE TABLE dist_tags (
    package_id BIGINT NOT NULL REFERENCES packages (id) ON DELETE CASCADE,
    tag        TEXT COLLATE "C" NOT NULL,
    version    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (package_id, tag)
);

CREATE TABLE maintainers (
    package_id BIGINT NOT NULL REFERENCES packages (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (package_id, user_id)
);

CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT COLLATE "C",
    action      TEXT COLLATE "C" NOT NULL,
    registry    TEXT COLLATE "C",
    package     TEXT COLLATE "C",
    version     TEXT COLLATE "C",
    detail      TEXT COLLATE "C",
    client_addr TEXT COLLATE "C"
);
CREATE INDEX audit_log_at_idx ON audit_log (at);

-- Upstreams: where a registry pulls what it does not hold, in order.
CREATE TABLE upstreams (
    id          BIGSERIAL PRIMARY KEY,
    registry_id BIGINT  NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    position    BIGINT  NOT NULL,
    -- "npmjs", a remote npm registry URL, or "registry:NAME" (another registry here).
    spec        TEXT COLLATE "C" NOT NULL,
    -- Credentials for a remote registry: a bearer token or "user:password".
    token       TEXT COLLATE "C",
    basic_auth  TEXT COLLATE "C",
    -- Trusted with packages flagged internal (a company's own remote registry).
    internal    BOOLEAN NOT NULL DEFAULT FALSE,
    CONSTRAINT upstreams_registry_id_spec_key UNIQUE (registry_id, spec)
);

-- The last copy of each upstream packument (revalidated; served when the upstream is down).
CREATE TABLE upstream_packuments (
    upstream_id   BIGINT NOT NULL REFERENCES upstreams (id) ON DELETE CASCADE,
    name          TEXT COLLATE "C" NOT NULL,
    body          BYTEA  NOT NULL,
    etag          TEXT COLLATE "C",
    last_modified TEXT COLLATE "C",
    fetched_at    BIGINT NOT NULL,
    PRIMARY KEY (upstream_id, name)
);

-- The change log every process sharing this database follows to drop what it caches.
-- `seq` is assigned at insert, not at commit: writers serialize on an advisory lock
-- taken right before they insert here, so seqs become visible in order (see
-- src/postgres/changes.rs). `writer`: which process (store) wrote it.
CREATE TABLE changes (
    seq         BIGSERIAL PRIMARY KEY,
    kind        TEXT COLLATE "C" NOT NULL,
    registry_id BIGINT,
    name        TEXT COLLATE "C",
    at          BIGINT NOT NULL,
    writer      TEXT COLLATE "C"
);

-- Tarballs whose blob file may not be written (or durable) yet: their bytes commit
-- with the version; a background task writes the files and deletes the rows.
CREATE TABLE blob_journal (
    id     BIGSERIAL PRIMARY KEY,
    sha512 TEXT COLLATE "C" NOT NULL,
    bytes  BYTEA NOT NULL
);

-- Names a registry admin claimed for a registry (a name, or a scope `@scope/*`).
CREATE TABLE claims (
    registry_id BIGINT NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    pattern     TEXT COLLATE "C" NOT NULL,
    claimed_by  TEXT COLLATE "C",
    claimed_at  BIGINT NOT NULL,
    CONSTRAINT claims_registry_id_pattern_key PRIMARY KEY (registry_id, pattern)
);

-- The firewall. A registry without a policy row has the built-in default policy.
CREATE TABLE policies (
    registry_id BIGINT PRIMARY KEY REFERENCES registries (id) ON DELETE CASCADE,
    document    TEXT COLLATE "C" NOT NULL,
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT COLLATE "C"
);

-- Advisories are global; `record` is the normalized advisory as JSON (not read here).
CREATE TABLE advisories (
    id       TEXT COLLATE "C" PRIMARY KEY,
    modified BIGINT NOT NULL,
    record   TEXT COLLATE "C" NOT NULL
);

CREATE TABLE advisory_packages (
    package     TEXT COLLATE "C" NOT NULL,
    advisory_id TEXT COLLATE "C" NOT NULL REFERENCES advisories (id) ON DELETE CASCADE,
    PRIMARY KEY (package, advisory_id)
);
CREATE INDEX advisory_packages_advisory_id_idx ON advisory_packages (advisory_id);

CREATE TABLE advisory_imports (
    id          BIGSERIAL PRIMARY KEY,
    imported_at BIGINT  NOT NULL,
    source      TEXT COLLATE "C" NOT NULL,
    replaced    BOOLEAN NOT NULL,
    added       BIGINT  NOT NULL,
    updated     BIGINT  NOT NULL,
    unchanged   BIGINT  NOT NULL,
    removed     BIGINT  NOT NULL,
    skipped     BIGINT  NOT NULL
);

-- An admin's waiver of one rule for one package's versions in a range, until it expires.
CREATE TABLE policy_exceptions (
    id          BIGSERIAL PRIMARY KEY,
    registry_id BIGINT NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    package     TEXT COLLATE "C" NOT NULL,
    range       TEXT COLLATE "C" NOT NULL,
    rule        TEXT COLLATE "C" NOT NULL,
    expires_at  BIGINT NOT NULL,
    reason      TEXT COLLATE "C" NOT NULL,
    created_by  TEXT COLLATE "C",
    created_at  BIGINT NOT NULL
);
CREATE INDEX policy_exceptions_registry_package_idx ON policy_exceptions (registry_id, package);

-- A registry admin's verdict on a quarantined version: approved or rejected.
CREATE TABLE reviews (
    registry_id BIGINT NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    package     TEXT COLLATE "C" NOT NULL,
    version     TEXT COLLATE "C" NOT NULL,
    verdict     TEXT COLLATE "C" NOT NULL,
    reason      TEXT COLLATE "C",
    reviewed_by TEXT COLLATE "C",
    reviewed_at BIGINT NOT NULL,
    PRIMARY KEY (registry_id, package, version)
);

-- The latest decision for a version (the audit log keeps the history).
CREATE TABLE decisions (
    registry_id BIGINT NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    package     TEXT COLLATE "C" NOT NULL,
    version     TEXT COLLATE "C" NOT NULL,
    verdict     TEXT COLLATE "C" NOT NULL,
    -- What audit mode would have done (the verdict when everything is enforced).
    would       TEXT COLLATE "C" NOT NULL,
    rule        TEXT COLLATE "C",
    reason      TEXT COLLATE "C" NOT NULL,
    findings    TEXT COLLATE "C" NOT NULL,
    -- The policy's update time and the advisory database's newest import.
    basis       TEXT COLLATE "C" NOT NULL,
    -- What the tarball showed (JSON), for a version that was pulled and refused.
    facts       TEXT COLLATE "C",
    decided_at  BIGINT NOT NULL,
    PRIMARY KEY (registry_id, package, version)
);
CREATE INDEX decisions_registry_verdict_idx ON decisions (registry_id, verdict);

-- Trusted publishing: which CI jobs may publish a name (not a package: a name not yet
-- published can be configured, so its first version is born in CI).
CREATE TABLE trusted_publishers (
    id          BIGSERIAL PRIMARY KEY,
    registry_id BIGINT NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    name        TEXT COLLATE "C" NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL,
    -- The rule (`gatehouse_npm::trust::TrustRule`) as JSON.
    rule        TEXT COLLATE "C" NOT NULL,
    created_by  TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX trusted_publishers_name ON trusted_publishers (name, registry_id);

-- Web app sign-ins; only the SHA-256 of a session id is kept.
CREATE TABLE web_sessions (
    id_hash     TEXT COLLATE "C" PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    client_addr TEXT COLLATE "C",
    user_agent  TEXT COLLATE "C"
);
CREATE INDEX web_sessions_by_user ON web_sessions (user_id);
