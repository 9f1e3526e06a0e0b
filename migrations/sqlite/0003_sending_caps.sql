-- Every mail boxtrap sends to a sender (a challenge or a notice) counts
-- against the [challenge] caps: per recipient address, per domain, per
-- mailbox and server-wide. The domain is kept so its cap is one indexed count.
ALTER TABLE outbound_messages ADD COLUMN rcpt_domain TEXT NOT NULL DEFAULT '';
UPDATE outbound_messages SET rcpt_domain = lower(substr(rcpt, instr(rcpt, '@') + 1))
    WHERE instr(rcpt, '@') > 0;
CREATE INDEX outbound_by_time ON outbound_messages(created_at);
CREATE INDEX outbound_by_domain ON outbound_messages(rcpt_domain, created_at);
CREATE INDEX outbound_by_mailbox ON outbound_messages(mailbox_id, created_at);

-- The address a challenge speaks as: the one the sender mailed (an alias, a
-- subaddress, an extra address), never the mailbox behind it. '' for
-- challenges made before this column: they speak as the mailbox.
ALTER TABLE challenges ADD COLUMN addressed_to TEXT NOT NULL DEFAULT '';
