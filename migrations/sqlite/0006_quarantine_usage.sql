-- The quarantine quota's numbers, kept by triggers, so the check at every
-- RCPT sums a handful of rows instead of every held message (counting them
-- cost about 1 ms per RCPT at 10,000 held messages). Each change to a
-- mailbox's held mail adds a row (+1 message and its bytes when one is
-- held, -1 and its bytes when one goes); the sweeper, and the RCPT check
-- for a busy mailbox, fold a mailbox's rows into one. Rows are only ever
-- inserted and deleted, so concurrent deliveries never wait on each other
-- for them (one counter row per mailbox would be locked by each until it
-- commits, and on PostgreSQL could deadlock with the sending caps' lock).
CREATE TABLE quarantine_usage (
    id          INTEGER PRIMARY KEY,
    mailbox_id  BIGINT  NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    messages    BIGINT  NOT NULL,
    bytes       BIGINT  NOT NULL
);
CREATE INDEX quarantine_usage_by_mailbox ON quarantine_usage(mailbox_id);
INSERT INTO quarantine_usage (mailbox_id, messages, bytes)
    SELECT mailbox_id, COUNT(*), SUM(size) FROM held_messages GROUP BY mailbox_id;

CREATE TRIGGER held_usage_insert AFTER INSERT ON held_messages
BEGIN
    INSERT INTO quarantine_usage (mailbox_id, messages, bytes)
        VALUES (NEW.mailbox_id, 1, NEW.size);
END;
-- Not when the mailbox itself is being removed (its rows go with it).
CREATE TRIGGER held_usage_delete AFTER DELETE ON held_messages
BEGIN
    INSERT INTO quarantine_usage (mailbox_id, messages, bytes)
        SELECT OLD.mailbox_id, -1, -OLD.size
        WHERE EXISTS (SELECT 1 FROM mailboxes WHERE id = OLD.mailbox_id);
END;

-- 0005's index for counting held mail at RCPT: no longer read.
DROP INDEX held_by_mailbox_size;
