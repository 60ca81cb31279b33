-- Tarballs whose blob file is written but not yet fsynced. Their bytes become durable
-- with the commit that records their version (one fsync per publish instead of three);
-- a background task fsyncs the files and deletes the rows, and start-up rewrites the
-- files of rows left by a crash. See src/blob_journal.rs.
CREATE TABLE blob_journal (
    id     INTEGER PRIMARY KEY,
    sha512 TEXT    NOT NULL,
    bytes  BLOB    NOT NULL
);
