-- maskline schema 1.  Conventions (see store/db.py):
--   * times are UTC epoch seconds, REAL (routing.model uses the same unit); local time exists
--     only at the edges (reports, exports, CLI);
--   * money is a decimal string (Python Decimal as TEXT), never REAL;
--   * phone numbers are E.164 text with "+", produced by routing.numbers;
--   * JSON columns hold UTF-8 JSON text;
--   * nothing a report, a bill or a dispute may need is deleted: bindings get unbound_at, pools
--     and groups are never (or only softly) deleted, ledger rows are immutable.

-- Enterprise customers.  Tariffs, API keys, report URLs live in later migrations.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  REAL NOT NULL
);

-- Number pools (SPEC §3).  Never deleted.
CREATE TABLE pools (
    pool_key          TEXT PRIMARY KEY,
    tenant_id         TEXT REFERENCES tenants (id),  -- NULL: the operator's own pool
    type              TEXT NOT NULL CHECK (type IN ('AXB', 'AXN', 'AXN_EXT', '95AXN', 'AXG')),
    name              TEXT NOT NULL,
    allocation_mode   TEXT NOT NULL DEFAULT 'default'
                      CHECK (allocation_mode IN ('default', 'strict', 'smart')),
    sms_mode          TEXT NOT NULL DEFAULT 'off'
                      CHECK (sms_mode IN ('off', 'intercept', 'full_intercept', 'smart')),
    sms_keywords      TEXT NOT NULL DEFAULT '[]',   -- JSON list: keyword whitelist (SPEC §5)
    sms_confirm       INTEGER NOT NULL DEFAULT 0,   -- confirm-before-send
    recording         INTEGER NOT NULL DEFAULT 0,   -- default of a binding's record flag
    ringback          TEXT NOT NULL DEFAULT '{}',   -- JSON {code name (AXBRing_A ...): tone id}
    warn_free_numbers INTEGER,                      -- warn when free numbers fall below
    warn_utilisation_pct REAL,                      -- warn when binding utilisation rises above
    created_at        REAL NOT NULL
);
CREATE INDEX pools_tenant ON pools (tenant_id);

-- The X number inventory imported by the operator (SPEC §3).
CREATE TABLE numbers (
    number        TEXT PRIMARY KEY,                 -- E.164
    city          TEXT NOT NULL,                    -- 95 numbers: the import's "nationwide" text
    province      TEXT NOT NULL,
    carrier       TEXT NOT NULL,
    spec          INTEGER NOT NULL CHECK (spec IN (1, 2, 3)),
    -- free: in stock; in_pool: bought into pool_key; locked: never allocated (pool_key kept when
    -- a pool's number is locked, so unlocking returns it to its pool).
    status        TEXT NOT NULL DEFAULT 'free' CHECK (status IN ('free', 'in_pool', 'locked')),
    pool_key      TEXT REFERENCES pools (pool_key),
    verification  TEXT NOT NULL DEFAULT 'unverified'
                  CHECK (verification IN ('unverified', 'pending', 'verified', 'rejected')),
    verification_deadline REAL,                     -- end of the grace period, NULL: none
    imported_at   REAL NOT NULL,
    purchased_at  REAL,                             -- bought into the current pool
    CHECK ((status = 'free') = (pool_key IS NULL) OR status = 'locked')
) WITHOUT ROWID;
CREATE INDEX numbers_stock ON numbers (status, spec, city);
CREATE INDEX numbers_pool ON numbers (pool_key) WHERE pool_key IS NOT NULL;

-- Which pool held which number when: monthly rent (charged per natural month from the purchase
-- month; the migration month stays with the old pool) and history after release.
CREATE TABLE number_tenancies (
    id           INTEGER PRIMARY KEY,
    number       TEXT NOT NULL REFERENCES numbers (number),
    pool_key     TEXT NOT NULL REFERENCES pools (pool_key),
    from_at      REAL NOT NULL,
    until_at     REAL,                              -- NULL: still in the pool
    reason       TEXT NOT NULL DEFAULT 'purchase'   -- purchase | migration
                 CHECK (reason IN ('purchase', 'migration'))
);
CREATE INDEX number_tenancies_number ON number_tenancies (number, from_at);
CREATE INDEX number_tenancies_pool ON number_tenancies (pool_key, from_at);

-- AXG number groups (SPEC §3).  deleted_at: soft delete, reports may name old groups.
CREATE TABLE groups (
    group_id    TEXT PRIMARY KEY,
    pool_key    TEXT NOT NULL REFERENCES pools (pool_key),
    name        TEXT NOT NULL CHECK (length(name) <= 128),
    remark      TEXT CHECK (remark IS NULL OR length(remark) <= 256),
    created_at  REAL NOT NULL,
    deleted_at  REAL
);
CREATE INDEX groups_pool ON groups (pool_key);

CREATE TABLE group_members (
    group_id  TEXT NOT NULL REFERENCES groups (group_id),
    number    TEXT NOT NULL,
    PRIMARY KEY (group_id, number)
) WITHOUT ROWID;

-- Bindings (SPEC §2).  Never deleted: unbinding sets unbound_at.
CREATE TABLE bindings (
    sub_id          TEXT PRIMARY KEY,
    pool_key        TEXT NOT NULL REFERENCES pools (pool_key),
    type            TEXT NOT NULL CHECK (type IN ('AXB', 'AXN', 'AXN_EXT', '95AXN', 'AXG')),
    x               TEXT NOT NULL,
    a               TEXT NOT NULL,
    b               TEXT,                           -- AXB peer / default B of the other types
    group_id        TEXT REFERENCES groups (group_id),
    extension       TEXT,
    expires_at      REAL NOT NULL,
    record          INTEGER NOT NULL DEFAULT 0,
    restriction     TEXT NOT NULL DEFAULT 'NONE'
                    CHECK (restriction IN ('NONE', 'CONTROL_AX_DISABLE', 'CONTROL_BX_DISABLE')),
    ring_timeout_s  INTEGER NOT NULL,
    out_id          TEXT,
    ringback        TEXT NOT NULL DEFAULT '{}',     -- JSON {code name: tone id}
    created_at      REAL NOT NULL,
    updated_at      REAL,
    unbound_at      REAL
);
CREATE INDEX bindings_x ON bindings (x);
CREATE INDEX bindings_a ON bindings (a);
-- Active bindings per pool: start-up load and pool utilisation.
CREATE INDEX bindings_active ON bindings (pool_key) WHERE unbound_at IS NULL;
-- Backstops for the index's X-sharing rules (SPEC §2); the in-memory index checks first, these
-- keep a bug from persisting two owners of one X.  An expired binding still holds its X until it
-- is unbound (unbound_at set).
CREATE UNIQUE INDEX bindings_x_extension ON bindings (x, extension)
    WHERE unbound_at IS NULL AND extension IS NOT NULL;
CREATE UNIQUE INDEX bindings_x_exclusive ON bindings (x)
    WHERE unbound_at IS NULL AND type IN ('AXN', '95AXN', 'AXG');

-- Pool-wide blacklist (AXN, AXN extension pools) and point-to-point pairs (SPEC §3).
CREATE TABLE blacklists (
    pool_key    TEXT NOT NULL REFERENCES pools (pool_key),
    number      TEXT NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (pool_key, number)
) WITHOUT ROWID;

CREATE TABLE blacklist_pairs (
    pool_key    TEXT NOT NULL REFERENCES pools (pool_key),
    first       TEXT NOT NULL,
    second      TEXT NOT NULL,
    direction   TEXT NOT NULL DEFAULT 'both'
                CHECK (direction IN ('both', 'first_to_second', 'second_to_first')),
    created_at  REAL NOT NULL,
    PRIMARY KEY (pool_key, first, second)
) WITHOUT ROWID;

-- End-of-call records (SPEC §6), UTC; local time is rendered at the edges.  No foreign keys:
-- a record must be written even for a call to an X that is in no pool.
CREATE TABLE call_records (
    id                 TEXT PRIMARY KEY,
    pool_key           TEXT,
    sub_id             TEXT,
    call_id            TEXT NOT NULL,
    phone_no           TEXT,
    secret_no          TEXT NOT NULL,
    peer_no            TEXT,
    called_display_no  TEXT,
    city               TEXT,
    call_type          INTEGER NOT NULL CHECK (call_type BETWEEN 0 AND 5),
    call_time          REAL NOT NULL,
    call_out_time      REAL,
    ring_time          REAL,
    start_time         REAL,
    release_time       REAL NOT NULL,
    release_dir        INTEGER NOT NULL CHECK (release_dir IN (0, 1, 2)),
    release_cause      INTEGER NOT NULL,
    unconnected_cause  INTEGER NOT NULL DEFAULT 0 CHECK (unconnected_cause BETWEEN 0 AND 4),
    record_url         TEXT,
    ring_record_url    TEXT,
    out_id             TEXT,
    duration_s         REAL NOT NULL DEFAULT 0,     -- answered seconds (billing)
    recording_path     TEXT                         -- WAV as written by the engine
);
CREATE INDEX call_records_pool_time ON call_records (pool_key, release_time);
CREATE INDEX call_records_release ON call_records (release_time);
CREATE INDEX call_records_call_id ON call_records (call_id);
CREATE INDEX call_records_sub_id ON call_records (sub_id);

-- Reports to push (SPEC §6): persisted outbox, at least once, in order per call (seq), each
-- with a unique id the receiver de-duplicates on.  The pull queue reads the same rows.
CREATE TABLE report_outbox (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,   -- delivery order
    id               TEXT NOT NULL UNIQUE,
    tenant_id        TEXT,
    pool_key         TEXT,
    call_id          TEXT,
    kind             TEXT NOT NULL,   -- start | ring | pickup | end | recording | sms_intercept | pool_warning
    payload          TEXT NOT NULL,   -- JSON object as pushed
    created_at       REAL NOT NULL,
    delivered_at     REAL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL,
    last_error       TEXT
);
CREATE INDEX report_outbox_due ON report_outbox (next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX report_outbox_pool ON report_outbox (pool_key, seq);

-- The money ledger (SPEC §7): immutable, signed Decimal amounts as TEXT; the balance is a sum.
CREATE TABLE ledger (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    pool_key    TEXT,
    number      TEXT,
    item        TEXT NOT NULL,   -- rent | call | recording | sms_intercept | sms_smart | discount | topup | package
    period      TEXT,            -- YYYYMM the entry belongs to (billing month, local)
    quantity    INTEGER NOT NULL DEFAULT 1,
    unit        TEXT,            -- minute | month | segment | ...
    unit_price  TEXT,            -- Decimal
    amount      TEXT NOT NULL,   -- Decimal, negative for discounts and charges' reversals
    ref         TEXT,            -- what was rated (call record id, "number:YYYYMM", ...)
    created_at  REAL NOT NULL
);
CREATE INDEX ledger_tenant_period ON ledger (tenant_id, period);
-- Rating is idempotent: one entry per (item, ref) — re-rating a call record is a no-op.
CREATE UNIQUE INDEX ledger_item_ref ON ledger (item, ref) WHERE ref IS NOT NULL;
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are immutable');
END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are immutable');
END;
