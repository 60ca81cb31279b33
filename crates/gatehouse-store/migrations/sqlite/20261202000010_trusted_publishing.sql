-- Trusted publishing: which CI jobs may publish a package, by the claims of their
-- OIDC token. Keyed by name, not package: a name not yet published can be given a
-- trust configuration, so its first version is born in CI.
CREATE TABLE trusted_publishers (
    id          INTEGER PRIMARY KEY,
    registry_id INTEGER NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    -- The rule (`gatehouse_npm::trust::TrustRule`) as JSON.
    rule        TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX trusted_publishers_name ON trusted_publishers (name, registry_id);

-- A token exchanged by trusted publishing: who published (`PublishedBy`, JSON). Such
-- a token may only publish new versions of its one package.
ALTER TABLE tokens ADD COLUMN published_by TEXT;
