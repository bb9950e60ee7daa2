-- A refresh token family's start (the redemption that issued its first token): rotation
-- renews a token's lifetime, but never past the family's start plus
-- `refresh_token_max_lifetime_secs`. Families issued before this version did not record it;
-- their sign-on time (`auth_time`, shared by the whole family, and never later than the
-- redemption) stands in for it, which can only end them earlier, never later.
ALTER TABLE refresh_tokens ADD COLUMN family_started_at BIGINT;
UPDATE refresh_tokens SET family_started_at = auth_time;
ALTER TABLE refresh_tokens ALTER COLUMN family_started_at SET NOT NULL;
