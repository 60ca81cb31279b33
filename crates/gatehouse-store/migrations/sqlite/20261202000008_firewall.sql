-- The firewall: each registry's policy, the advisory database, admins' exceptions
-- and reviews, and the decisions made (with what they were based on).

-- A registry without a row has the built-in default policy.
CREATE TABLE policies (
    registry_id INTEGER PRIMARY KEY REFERENCES registries (id) ON DELETE CASCADE,
    document    TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT
);

-- Advisories are global (one database for every registry). `record` is the
-- normalized advisory as JSON: the store does not read it.
CREATE TABLE advisories (
    id       TEXT    PRIMARY KEY,
    modified INTEGER NOT NULL,
    record   TEXT    NOT NULL
);

-- Which packages an advisory names: what a packument build looks up.
CREATE TABLE advisory_packages (
    package     TEXT NOT NULL,
    advisory_id TEXT NOT NULL REFERENCES advisories (id) ON DELETE CASCADE,
    PRIMARY KEY (package, advisory_id)
) WITHOUT ROWID;
CREATE INDEX advisory_packages_advisory_id_idx ON advisory_packages (advisory_id);

CREATE TABLE advisory_imports (
    id          INTEGER PRIMARY KEY,
    imported_at INTEGER NOT NULL,
    source      TEXT    NOT NULL,
    replaced    BOOLEAN NOT NULL,
    added       INTEGER NOT NULL,
    updated     INTEGER NOT NULL,
    unchanged   INTEGER NOT NULL,
    removed     INTEGER NOT NULL,
    skipped     INTEGER NOT NULL
);

-- An admin's waiver of one rule for one package's versions in a range, until it expires.
CREATE TABLE policy_exceptions (
    id          INTEGER PRIMARY KEY,
    registry_id INTEGER NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    package     TEXT    NOT NULL,
    range       TEXT    NOT NULL,
    rule        TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    created_by  TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX policy_exceptions_registry_package_idx ON policy_exceptions (registry_id, package);

-- A registry admin's verdict on a quarantined version: approved (served from then
-- on) or rejected (blocked).
CREATE TABLE reviews (
    registry_id INTEGER NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    package     TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    verdict     TEXT    NOT NULL,
    reason      TEXT,
    reviewed_by TEXT,
    reviewed_at INTEGER NOT NULL,
    PRIMARY KEY (registry_id, package, version)
);

-- The latest decision for a version that entered the registry or was asked for
-- (the audit log keeps the history). The quarantine queue is the quarantined ones
-- without a review.
CREATE TABLE decisions (
    registry_id  INTEGER NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    package      TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    verdict      TEXT    NOT NULL,
    -- What audit mode would have done (the verdict when everything is enforced).
    would        TEXT    NOT NULL,
    rule         TEXT,
    reason       TEXT    NOT NULL,
    findings     TEXT    NOT NULL,
    -- What the decision was based on: the policy's update time and the advisory
    -- database's newest import.
    basis        TEXT    NOT NULL,
    -- What the tarball showed (JSON), for a version that was pulled and refused.
    facts        TEXT,
    decided_at   INTEGER NOT NULL,
    PRIMARY KEY (registry_id, package, version)
);
CREATE INDEX decisions_registry_verdict_idx ON decisions (registry_id, verdict);

-- What the tarball showed when it was inspected (a binding.gyp, a manifest that
-- differs from it), for the rules that need it. NULL for versions stored before.
ALTER TABLE versions ADD COLUMN facts TEXT;
