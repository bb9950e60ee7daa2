-- devicegate schema for PostgreSQL, version 5. Released migrations are never edited.
-- The upstream provider a person signed on through (`idp`), kept with the flow they walk,
-- the grant they approve, the refresh tokens it issues and their browser session; NULL for
-- a local password sign-in (and everything from before this version).
ALTER TABLE flows ADD COLUMN idp TEXT;
ALTER TABLE device_grants ADD COLUMN idp TEXT;
ALTER TABLE refresh_tokens ADD COLUMN idp TEXT;
ALTER TABLE browser_sessions ADD COLUMN idp TEXT;
