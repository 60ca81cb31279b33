-- A disabled user can't log in, and their tokens stop working at once (the change
-- log tells every process); their packages and audit rows stay.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
