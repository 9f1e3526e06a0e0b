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
CREATE OR REPLACE FUNCTION held_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO quarantine_usage (mailbox_id, messages, bytes)
            VALUES (NEW.mailbox_id, 1, NEW.size);
    ELSIF TG_OP = 'UPDATE' THEN
        IF NEW.state = 'deleted' AND OLD.state <> 'deleted' THEN
            INSERT INTO quarantine_usage (mailbox_id, messages, bytes)
                VALUES (NEW.mailbox_id, -1, -NEW.size);
        ELSIF OLD.state = 'deleted' AND NEW.state <> 'deleted' THEN
            INSERT INTO quarantine_usage (mailbox_id, messages, bytes)
                VALUES (NEW.mailbox_id, 1, NEW.size);
        END IF;
    ELSIF OLD.state <> 'deleted' THEN
        INSERT INTO quarantine_usage (mailbox_id, messages, bytes)
            SELECT OLD.mailbox_id, -1, -OLD.size
            WHERE EXISTS (SELECT 1 FROM mailboxes WHERE id = OLD.mailbox_id);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER held_usage_state AFTER UPDATE OF state ON held_messages
    FOR EACH ROW EXECUTE FUNCTION held_usage();
