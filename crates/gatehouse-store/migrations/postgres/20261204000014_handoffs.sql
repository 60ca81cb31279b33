-- One-use records a request leaves for a later one, which another replica may
-- answer: an npm web login waiting for its approval, a new token waiting for the
-- page that shows it. The key is the SHA-256 of a random id only the client holds;
-- no secret is ever stored here.
CREATE TABLE handoffs (
    key        TEXT COLLATE "C" PRIMARY KEY,
    value      TEXT COLLATE "C" NOT NULL,
    expires_at BIGINT NOT NULL
);
-- Expired ones are removed a few at a time, as new ones come.
CREATE INDEX handoffs_by_expiry ON handoffs (expires_at);

-- Failed password checks per user name ('user:NAME') and per client address
-- ('addr:IP'), counted in a window, so the limits hold across replicas.
CREATE TABLE login_failures (
    key        TEXT COLLATE "C" PRIMARY KEY,
    count      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX login_failures_by_expiry ON login_failures (expires_at);
