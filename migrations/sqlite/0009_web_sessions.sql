-- The mailbox owners' web UI: sign-in sessions, failed sign-ins (for the
-- throttle), and the index the quarantine page pages through. Times are
-- microseconds since the Unix epoch (UTC).

CREATE TABLE web_sessions (
    -- SHA-256 of the random session id in the cookie, hex: a copy of the
    -- table does not sign anybody in
    id_hash      TEXT    PRIMARY KEY,
    mailbox_id   BIGINT  NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    created_at   BIGINT  NOT NULL,
    last_seen    BIGINT  NOT NULL,
    -- the token every form of this session carries (random, hex)
    csrf_token   TEXT    NOT NULL
);
CREATE INDEX web_sessions_by_last_seen ON web_sessions(last_seen);
CREATE INDEX web_sessions_by_mailbox ON web_sessions(mailbox_id);

-- One row per failed sign-in, under two keys: 'account:<address>' and
-- 'ip:<client address or /64>'. Rows older than the throttle window are
-- purged at sign-in.
CREATE TABLE web_login_failures (
    id          INTEGER PRIMARY KEY,
    key         TEXT    NOT NULL,
    at          BIGINT  NOT NULL
);
CREATE INDEX web_login_failures_by_key ON web_login_failures(key, at);

-- /quarantine: one mailbox's held mail, newest first, by keyset.
CREATE INDEX held_by_mailbox_time ON held_messages(mailbox_id, arrived_at, id);
