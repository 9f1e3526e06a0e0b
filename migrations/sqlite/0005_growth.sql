-- Bounds on what the quarantine keeps: each mailbox's quarantine quota, and
-- the indexes the sweeper's retention purges need. Times are microseconds
-- since the Unix epoch (UTC).

-- A mailbox's quarantine quota, checked at RCPT: NULL takes the server's
-- default ([challenge] quarantine_max_messages, quarantine_max_bytes), 0 is
-- no limit.
ALTER TABLE mailboxes ADD COLUMN quarantine_max_messages BIGINT;
ALTER TABLE mailboxes ADD COLUMN quarantine_max_bytes BIGINT;
-- Since when new mail has been refused because the quarantine is at its
-- quota; NULL while it has room. Set and cleared once per crossing, each
-- with a line in the activity log.
ALTER TABLE mailboxes ADD COLUMN quarantine_full_since BIGINT;

-- The quota check: a mailbox's held count and bytes from the index alone.
CREATE INDEX held_by_mailbox_size ON held_messages(mailbox_id, size);
-- Challenges that held mail or queued outbound mail refers to are kept; the
-- same indexes serve the foreign keys when a challenge is deleted.
CREATE INDEX held_by_challenge ON held_messages(challenge_id);
CREATE INDEX outbound_by_challenge ON outbound_messages(challenge_id);
-- Activity lines past their retention, oldest first.
CREATE INDEX activity_by_time ON activity(at);
