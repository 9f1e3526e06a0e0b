-- Deleting held mail is soft: the owner's delete (and block, ignore) sets
-- state 'deleted' and deleted_at; the owner can restore it until the
-- sweeper purges it `[challenge] keep_deleted` after its deletion. A
-- deleted message is not in the quarantine's quota, its expiry or its
-- releases. seen_at: when the owner opened it or marked it seen (NULL:
-- not seen). Times are microseconds since the Unix epoch (UTC).
ALTER TABLE held_messages ADD COLUMN deleted_at BIGINT;
ALTER TABLE held_messages ADD COLUMN seen_at BIGINT;
-- The owner's "deleted" view and the sweeper's purge.
CREATE INDEX held_deleted ON held_messages(mailbox_id, arrived_at, id) WHERE state = 'deleted';
CREATE INDEX held_deleted_at ON held_messages(deleted_at) WHERE state = 'deleted';

-- The quota's usage rows (migration 0006): a deleted message leaves the
-- quota when it is deleted, comes back when restored, and its purge
-- changes nothing.
CREATE TRIGGER held_usage_deleted AFTER UPDATE OF state ON held_messages
WHEN NEW.state = 'deleted' AND OLD.state <> 'deleted'
BEGIN
    INSERT INTO quarantine_usage (mailbox_id, messages, bytes)
        VALUES (NEW.mailbox_id, -1, -NEW.size);
END;
CREATE TRIGGER held_usage_restored AFTER UPDATE OF state ON held_messages
WHEN OLD.state = 'deleted' AND NEW.state <> 'deleted'
BEGIN
    INSERT INTO quarantine_usage (mailbox_id, messages, bytes)
        VALUES (NEW.mailbox_id, 1, NEW.size);
END;
DROP TRIGGER held_usage_delete;
CREATE TRIGGER held_usage_delete AFTER DELETE ON held_messages
WHEN OLD.state <> 'deleted'
BEGIN
    INSERT INTO quarantine_usage (mailbox_id, messages, bytes)
        SELECT OLD.mailbox_id, -1, -OLD.size
        WHERE EXISTS (SELECT 1 FROM mailboxes WHERE id = OLD.mailbox_id);
END;
