-- Whitelist by association is off by default: it trusted the envelope, so
-- one forged message could put anyone on an allow list (issue 10). Every
-- existing mailbox had it on only because that was the old default (there
-- is no record of who chose it), so it is turned off everywhere; an admin
-- turns it back on per mailbox with `boxtrap mailbox set ADDRESS
-- --whitelist-by-association on`. SQLite cannot change a column's default:
-- the column is made again, 0 in every row.
ALTER TABLE mailboxes DROP COLUMN whitelist_by_association;
ALTER TABLE mailboxes ADD COLUMN whitelist_by_association BIGINT NOT NULL DEFAULT 0;
