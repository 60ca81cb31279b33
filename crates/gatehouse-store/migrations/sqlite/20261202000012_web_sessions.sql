-- Web app sign-ins. Only the SHA-256 of a session id is kept, so a copy of the
-- database does not sign anyone in.
CREATE TABLE web_sessions (
    id_hash     TEXT    PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    client_addr TEXT,
    user_agent  TEXT
);
CREATE INDEX web_sessions_by_user ON web_sessions (user_id);
