-- Where each sender-list rule came from (the owner web UI issue, `/lists`):
-- a short code written by whoever added the rule: 'owner' (the lists page
-- or the JSON API), 'admin' (`boxtrap list add`), 'import' (a list file),
-- 'release:<how>' (allowed when held mail was released: owner, link,
-- reply, resumed), 'association:<message>' (whitelisted by association
-- from that message). Rules from before this migration have ''.
ALTER TABLE sender_rules ADD COLUMN source TEXT NOT NULL DEFAULT '';
