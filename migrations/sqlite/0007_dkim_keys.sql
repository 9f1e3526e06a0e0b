-- DKIM keys (RFC 6376) that sign the mail boxtrap sends to senders
-- (challenges and notices), per local domain: `boxtrap dkim generate`
-- makes them, `boxtrap dkim show` prints their DNS records. Times are
-- microseconds since the Unix epoch (UTC).

CREATE TABLE dkim_keys (
    id           INTEGER PRIMARY KEY,
    -- the signing domain (d=); a domain's keys go with it
    domain_id    BIGINT  NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    -- s=, lower case: the key's record is at <selector>._domainkey.<domain>
    selector     TEXT    NOT NULL,
    -- 'ed25519' (ed25519-sha256, RFC 8463) or 'rsa' (rsa-sha256)
    algorithm    TEXT    NOT NULL,
    -- the private key, PKCS#8 DER; a secret like the token keys in
    -- `settings`, never printed
    private_key  BLOB    NOT NULL,
    created_at   BIGINT  NOT NULL,
    UNIQUE (domain_id, selector)
);
CREATE INDEX dkim_keys_by_domain ON dkim_keys(domain_id, algorithm);
