-- Domain digests (the owner web UI issue, "Digest"): an admin subscribes
-- an address (a local mailbox or any other) to a digest of the mail held
-- for every mailbox of one local domain (`boxtrap digest subscribe`, the
-- /admin/digests page).
--
-- How often it goes (hourly, daily, weekly), when the last one went
-- (microseconds since the epoch; NULL: never), and the highest held
-- message id it covered: the next one lists only mail held after it (at
-- subscription, the highest id then, so the first lists only mail held
-- since).
CREATE TABLE domain_digests (
    id          INTEGER PRIMARY KEY,
    domain_id   BIGINT  NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    -- where the digest goes, as typed (lower-cased domain)
    address     TEXT    NOT NULL,
    frequency   TEXT    NOT NULL DEFAULT 'daily',
    last_at     BIGINT,
    last_held   BIGINT  NOT NULL DEFAULT 0,
    created_at  BIGINT  NOT NULL,
    UNIQUE (domain_id, address)
);
