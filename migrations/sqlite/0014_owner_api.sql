-- Personal API tokens of mailbox owners (`Authorization: Bearer ...` on
-- /api/v1/), made with `boxtrap token create` or on the settings page.
-- Only the SHA-256 of a token is kept: a copy of the table signs nobody
-- in. Times are microseconds since the Unix epoch (UTC).
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    mailbox_id   BIGINT  NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    -- the owner's name for it ("phone", "backup script")
    name         TEXT    NOT NULL,
    -- SHA-256 of the token, hex
    token_hash   TEXT    NOT NULL UNIQUE,
    created_at   BIGINT  NOT NULL,
    -- when it was last used (at most once a minute), or NULL: never
    last_used    BIGINT
);
CREATE INDEX api_tokens_by_mailbox ON api_tokens(mailbox_id);

-- The owner's search of held mail: the From: domain (after the last @,
-- lower case like the address) for `from:@domain`, and how many
-- attachments a message has (NULL: held before this column, so
-- not known).
ALTER TABLE held_messages ADD COLUMN sender_domain TEXT NOT NULL DEFAULT '';
UPDATE held_messages SET sender_domain = replace(sender, rtrim(sender, replace(sender, '@', '')), '') WHERE sender LIKE '%@%';
CREATE INDEX held_by_sender_domain ON held_messages(mailbox_id, sender_domain);
ALTER TABLE held_messages ADD COLUMN attachments BIGINT;
