-- maskline schema 2: tenants' API keys (access key pairs, Alibaba style).
--
-- The secret of a key is never stored: the server derives it on demand as
-- HMAC-SHA256(master key, "maskline/access-key/v1" NUL access_key_id NUL salt) rendered in 30
-- base62 characters (api/tenants.py).  The master key lives in a separate file, so a leak of
-- this database alone reveals no secret.  Keys are never deleted, only disabled.
CREATE TABLE api_keys (
    access_key_id TEXT PRIMARY KEY,                  -- 'MLAK' + 20 base62 characters
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    salt          TEXT NOT NULL,                     -- random, per key (hex)
    status        TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at    REAL NOT NULL,
    disabled_at   REAL                               -- since when it is disabled; NULL: active
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
