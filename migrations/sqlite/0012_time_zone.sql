-- The owner's time zone (the owner web UI issue, "/settings"): an IANA
-- name such as Europe/Berlin, checked against the time zone database
-- before it is saved; the owner's pages show times in it. UTC by default.
ALTER TABLE mailboxes ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';
