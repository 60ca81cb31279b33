-- Which process wrote a change (a random id per open store), so a server can skip
-- the package changes it made itself: it updated its caches when it made them.
ALTER TABLE changes ADD COLUMN writer TEXT;
