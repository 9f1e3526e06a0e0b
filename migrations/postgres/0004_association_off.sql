-- Whitelist by association is off by default: it trusted the envelope, so
-- one forged message could put anyone on an allow list (issue 10). Every
-- existing mailbox had it on only because that was the old default (there
-- is no record of who chose it), so it is turned off everywhere; an admin
-- turns it back on per mailbox with `boxtrap mailbox set ADDRESS
-- --whitelist-by-association on`.
ALTER TABLE mailboxes ALTER COLUMN whitelist_by_association SET DEFAULT 0;
UPDATE mailboxes SET whitelist_by_association = 0 WHERE whitelist_by_association <> 0;
