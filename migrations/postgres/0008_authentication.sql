-- Sender authentication and spam scores (the authentication issue).
--
-- What the checks at the end of DATA found, kept with each held copy so
-- the owner can see why it was held and why no challenge was sent: the
-- Authentication-Results value this server wrote (RFC 8601), and the spam
-- score in tenths of a point (NULL: not scored) with its parts in words.
ALTER TABLE held_messages ADD COLUMN auth_results TEXT NOT NULL DEFAULT '';
ALTER TABLE held_messages ADD COLUMN spam_score BIGINT;
ALTER TABLE held_messages ADD COLUMN spam_report TEXT NOT NULL DEFAULT '';

-- The spam bands, per mailbox, in tenths of a point (NULL: that band is
-- off): below spam_bypass_below mail is delivered without a challenge; at
-- or above spam_no_challenge_at it is held without one. The defaults are
-- BoxTrapper's -2.5 and SpamAssassin's 5.0; mailboxes made before this
-- migration had no score to use, so they get the defaults too.
ALTER TABLE mailboxes ADD COLUMN spam_no_challenge_at BIGINT;
UPDATE mailboxes SET spam_bypass_below = -25 WHERE spam_bypass_below IS NULL;
UPDATE mailboxes SET spam_no_challenge_at = 50;
