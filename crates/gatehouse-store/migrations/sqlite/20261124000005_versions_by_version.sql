-- Versions are looked up by their number (the `latest` tag's manifest for the search
-- fields on every publish, deprecations, unpublishes, tags). Without this index each
-- lookup scanned every version of the package. Unique: a version number is unique per
-- package already, since its release key (the number without build metadata) is.
CREATE UNIQUE INDEX versions_package_id_version_key ON versions (package_id, version);
