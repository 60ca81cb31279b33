-- Provenance: the Sigstore bundles a version was published with, verified, as
-- `GET /-/npm/v1/attestations/{name}@{version}` serves them (a JSON array of
-- `{predicateType, bundle}`). NULL for versions without.
ALTER TABLE versions ADD COLUMN attestations TEXT;
