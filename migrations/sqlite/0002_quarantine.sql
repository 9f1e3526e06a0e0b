-- Challenge-response quarantine: per-mailbox settings, sender lists, held
-- mail, challenges, the outbound queue, the activity log, token keys and
-- template overrides. Times are microseconds since the Unix epoch (UTC);
-- booleans are 0/1.

ALTER TABLE mailboxes ADD COLUMN challenge_enabled BIGINT NOT NULL DEFAULT 0;
-- name shown on challenges ("Alice Example" <alice@example.test>)
ALTER TABLE mailboxes ADD COLUMN display_name TEXT NOT NULL DEFAULT '';
ALTER TABLE mailboxes ADD COLUMN keep_days BIGINT NOT NULL DEFAULT 15;
-- spam score (tenths) below which mail bypasses the challenge; NULL = unused
ALTER TABLE mailboxes ADD COLUMN spam_bypass_below BIGINT;
ALTER TABLE mailboxes ADD COLUMN whitelist_by_association BIGINT NOT NULL DEFAULT 1;
ALTER TABLE mailboxes ADD COLUMN auto_whitelist_sent BIGINT NOT NULL DEFAULT 1;
ALTER TABLE mailboxes ADD COLUMN notify_released BIGINT NOT NULL DEFAULT 1;
ALTER TABLE mailboxes ADD COLUMN notify_blocked BIGINT NOT NULL DEFAULT 0;
-- bumped by every change to the mailbox's sender lists, so servers can
-- keep the compiled rules until they change
ALTER TABLE mailboxes ADD COLUMN rules_version BIGINT NOT NULL DEFAULT 0;

-- BoxTrapper's "email addresses for this account"
CREATE TABLE mailbox_addresses (
    id          INTEGER PRIMARY KEY,
    mailbox_id  BIGINT  NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    address     TEXT    NOT NULL,
    -- one mailbox per address
    UNIQUE (address)
);

CREATE TABLE sender_rules (
    id          INTEGER PRIMARY KEY,
    mailbox_id  BIGINT  NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    -- 'allow' | 'block' | 'ignore'
    list        TEXT    NOT NULL,
    -- 'from' | 'to' | 'cc' | 'subject'
    field       TEXT    NOT NULL,
    pattern     TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    UNIQUE (mailbox_id, list, field, pattern)
);

CREATE TABLE challenges (
    id             INTEGER PRIMARY KEY,
    mailbox_id     BIGINT  NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    -- the challenged address (From: of the held mail), lower case
    sender         TEXT    NOT NULL,
    sender_domain  TEXT    NOT NULL,
    -- 'open' | 'verified' | 'expired'
    state          TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    verified_at    BIGINT
);
-- at most one open challenge per sender and mailbox
CREATE UNIQUE INDEX challenges_one_open ON challenges(mailbox_id, sender) WHERE state = 'open';
CREATE INDEX challenges_by_time ON challenges(created_at);

CREATE TABLE held_messages (
    id             INTEGER PRIMARY KEY,
    mailbox_id     BIGINT  NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    queue_id       TEXT    NOT NULL,
    rcpt_index     BIGINT  NOT NULL,
    -- envelope sender ('' for <>) and the address as given in RCPT TO
    env_sender     TEXT    NOT NULL,
    original_rcpt  TEXT    NOT NULL,
    -- the sender identity (From: address, lower case; '' if none)
    sender         TEXT    NOT NULL,
    sender_name    TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    message_id     TEXT    NOT NULL,
    date_header    TEXT    NOT NULL,
    size           BIGINT  NOT NULL,
    arrived_at     BIGINT  NOT NULL,
    -- why it was held (a fixed code) and the detail shown to the owner
    reason         TEXT    NOT NULL,
    reason_detail  TEXT    NOT NULL,
    challenge_id   BIGINT  REFERENCES challenges(id),
    -- 'held', or 'releasing' while a release delivers it (claimed_at says
    -- since when; a release that died is finished by the sweeper)
    state          TEXT    NOT NULL DEFAULT 'held',
    claimed_at     BIGINT,
    -- the message with our Received: header, CRLF line endings
    data           BLOB    NOT NULL,
    UNIQUE (queue_id, rcpt_index)
);
CREATE INDEX held_by_sender ON held_messages(mailbox_id, sender);
CREATE INDEX held_by_time ON held_messages(arrived_at);

CREATE TABLE outbound_messages (
    id               INTEGER PRIMARY KEY,
    -- 'verify' | 'verifyreleased' | 'returnverify' | 'blacklist'
    kind             TEXT    NOT NULL,
    mailbox_id       BIGINT  REFERENCES mailboxes(id) ON DELETE SET NULL,
    challenge_id     BIGINT  REFERENCES challenges(id) ON DELETE SET NULL,
    -- envelope: '' is the null sender <>
    env_from         TEXT    NOT NULL,
    rcpt             TEXT    NOT NULL,
    data             BLOB    NOT NULL,
    -- 'queued' | 'sent' | 'failed'
    state            TEXT    NOT NULL DEFAULT 'queued',
    attempts         BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT  NOT NULL,
    last_error       TEXT    NOT NULL DEFAULT '',
    created_at       BIGINT  NOT NULL,
    done_at          BIGINT
);
CREATE INDEX outbound_due ON outbound_messages(state, next_attempt_at);
CREATE INDEX outbound_by_rcpt ON outbound_messages(rcpt, kind, created_at);

CREATE TABLE activity (
    id          INTEGER PRIMARY KEY,
    mailbox_id  BIGINT  NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    at          BIGINT  NOT NULL,
    -- held | challenged | verified | released | deleted | expired | blocked | ignored | allowed | ...
    action      TEXT    NOT NULL,
    sender      TEXT    NOT NULL,
    detail      TEXT    NOT NULL
);
CREATE INDEX activity_by_mailbox ON activity(mailbox_id, at);

CREATE TABLE template_overrides (
    mailbox_id  BIGINT  NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (mailbox_id, name)
);
