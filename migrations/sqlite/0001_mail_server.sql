-- The mail server underneath: domains, mailboxes, aliases, the delivery
-- queue for deliveries that failed temporarily, and server settings.
-- Times are microseconds since the Unix epoch (UTC).

CREATE TABLE domains (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE mailboxes (
    id             INTEGER PRIMARY KEY,
    domain_id      BIGINT  NOT NULL REFERENCES domains(id),
    -- lower-case local@domain, the lookup key
    address        TEXT    NOT NULL UNIQUE,
    -- argon2 PHC string; empty means the owner cannot log in
    password_hash  TEXT    NOT NULL DEFAULT '',
    created_at     BIGINT  NOT NULL
);

CREATE TABLE aliases (
    id          INTEGER PRIMARY KEY,
    domain_id   BIGINT  NOT NULL REFERENCES domains(id),
    address     TEXT    NOT NULL,
    mailbox_id  BIGINT  NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    created_at  BIGINT  NOT NULL,
    UNIQUE (address, mailbox_id)
);
CREATE INDEX aliases_by_address ON aliases(address);

CREATE TABLE queued_messages (
    queue_id    TEXT    PRIMARY KEY,
    -- envelope sender; empty for the null sender <>
    sender      TEXT    NOT NULL,
    arrived_at  BIGINT  NOT NULL,
    -- the message as received plus our Received: header, CRLF line endings
    data        BLOB    NOT NULL
);

CREATE TABLE queued_recipients (
    id               INTEGER PRIMARY KEY,
    queue_id         TEXT    NOT NULL REFERENCES queued_messages(queue_id) ON DELETE CASCADE,
    rcpt_index       BIGINT  NOT NULL,
    mailbox_id       BIGINT  NOT NULL REFERENCES mailboxes(id),
    -- the address as given in RCPT TO
    original         TEXT    NOT NULL,
    attempts         BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT  NOT NULL,
    last_error       TEXT    NOT NULL DEFAULT '',
    -- 'pending' or 'failed'
    state            TEXT    NOT NULL DEFAULT 'pending',
    UNIQUE (queue_id, rcpt_index)
);
CREATE INDEX queued_recipients_due ON queued_recipients(state, next_attempt_at);

CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
