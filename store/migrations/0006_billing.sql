-- maskline schema 6: billing (issue 6) — per-tenant tariffs, prepaid minute packages and the
-- progress of the rating job.  Money lines themselves stay in the immutable `ledger` (0001);
-- billing/__init__.py documents which lines rating writes.

-- A tenant's tariff overrides (SPEC §7).  NULL in a price column: the SPEC §7 default
-- (billing.tariffs.DEFAULT_TARIFF), so a tenant without a row, or with NULLs, follows the
-- defaults.  Prices are Decimal TEXT in yuan, at most 3 decimals, >= 0.  A change applies to
-- what is rated after it: ledger lines already written keep their unit price.
CREATE TABLE billing_tariffs (
    tenant_id                  TEXT PRIMARY KEY REFERENCES tenants (id),
    rent_virtual               TEXT,   -- per number and month, spec 1 (virtual 170/171)
    rent_carrier               TEXT,   -- per number and month, spec 2 (carrier number)
    rent_95                    TEXT,   -- per number and month, spec 3 (95 number)
    call_per_minute            TEXT,   -- per started minute of answered time
    recording_per_minute       TEXT,   -- per started minute of recording
    sms_intercept_per_segment  TEXT,   -- reserved: SMS issue
    sms_smart_per_segment      TEXT,   -- reserved: SMS issue
    updated_at                 REAL NOT NULL
) WITHOUT ROWID;

-- Prepaid call-minute packages sold to a tenant (SPEC §7).  The purchase itself is a `package`
-- ledger line (ref "package:<id>"); every draw is a `call_package` ledger line (ref
-- "<call record id>:<package id>") written in the same transaction as the used_minutes update,
-- so used_minutes always equals the sum of those lines' quantities.  Valid in
-- [valid_from, valid_until) (UTC epoch seconds; the API speaks local dates, both inclusive).
-- Never deleted; the state (pending, active, exhausted, expired) is derived, not stored.
CREATE TABLE billing_packages (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    price         TEXT NOT NULL,                    -- Decimal yuan, as charged
    minutes       INTEGER NOT NULL CHECK (minutes > 0),
    used_minutes  INTEGER NOT NULL DEFAULT 0 CHECK (used_minutes BETWEEN 0 AND minutes),
    valid_from    REAL NOT NULL,
    valid_until   REAL NOT NULL,
    created_at    REAL NOT NULL,
    CHECK (valid_until > valid_from)
);  -- with a rowid: listings show packages in the order they were sold
-- Drawing order: oldest-expiring first among the tenant's packages.
CREATE INDEX billing_packages_draw ON billing_packages (tenant_id, valid_until, created_at);

-- Progress of the periodic billing job (billing.ledger_run): how far it has read
-- call_records / recording_events (rowid / id cursors) and the last month whose rent it billed.
-- Only a hint for speed: every ledger write is idempotent on (item, ref), so a lost or stale
-- cursor re-reads rows without charging twice.
CREATE TABLE billing_state (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) WITHOUT ROWID;
