-- The digest of newly held mail (the owner web UI issue, "Digest").
--
-- How often each mailbox's owner gets a digest (never, hourly, daily,
-- weekly; daily by default), when the last one went (microseconds since
-- the epoch; NULL: never), the highest held message id it covered (the
-- next one lists only mail held after it), and when a digest last said the
-- quarantine was full (at most one such warning a day).
ALTER TABLE mailboxes ADD COLUMN digest TEXT NOT NULL DEFAULT 'daily';
ALTER TABLE mailboxes ADD COLUMN digest_last_at BIGINT;
ALTER TABLE mailboxes ADD COLUMN digest_last_held BIGINT NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN digest_full_at BIGINT;
