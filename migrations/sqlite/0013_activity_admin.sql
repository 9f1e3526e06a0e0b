-- The activity page and the admin pages (the owner web UI issue).
--
-- Which mailbox owners are admins (0/1; `boxtrap mailbox set X --admin
-- on`): they see every mailbox on /admin and may act for its owner.
-- Each line of the activity log may name the held message it is about
-- (`held_id`; no foreign key: the line outlives the message), who did it
-- when that was not the owner (`actor`: an admin's address, `link`) and
-- the client address of the web request that caused it (`client_ip`).
ALTER TABLE mailboxes ADD COLUMN admin BIGINT NOT NULL DEFAULT 0;
ALTER TABLE activity ADD COLUMN held_id BIGINT;
ALTER TABLE activity ADD COLUMN actor TEXT NOT NULL DEFAULT '';
ALTER TABLE activity ADD COLUMN client_ip TEXT NOT NULL DEFAULT '';
CREATE INDEX activity_by_held ON activity(mailbox_id, held_id);
