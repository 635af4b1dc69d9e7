-- maskline schema 3: inventory — real-person verification policies and number migration jobs.

-- Real-person verification required per binding type (SPEC §3), set by the operator.  A type
-- without a row requires nothing.  95AXN never requires it (enforced by the control plane and
-- here).  grace_s: how long a newly bought number may bind before it must be verified.
CREATE TABLE verification_policies (
    type        TEXT PRIMARY KEY CHECK (type IN ('AXB', 'AXN', 'AXN_EXT', 'AXG')),
    required    INTEGER NOT NULL CHECK (required IN (0, 1)),
    grace_s     REAL NOT NULL CHECK (grace_s >= 0),
    updated_at  REAL NOT NULL
) WITHOUT ROWID;

-- Migration of unbound numbers between two pools of one type and tenant (SPEC §3).  Kept for
-- the tenant to read the per-number outcome; free of charge (no ledger line).
CREATE TABLE migration_jobs (
    job_id      TEXT PRIMARY KEY,
    tenant_id   TEXT REFERENCES tenants (id),    -- NULL: operator pools
    from_pool   TEXT NOT NULL REFERENCES pools (pool_key),
    to_pool     TEXT NOT NULL REFERENCES pools (pool_key),
    city        TEXT,                            -- set for "N numbers of a city" jobs
    requested   INTEGER NOT NULL CHECK (requested BETWEEN 1 AND 500),
    moved       INTEGER NOT NULL,
    failed      INTEGER NOT NULL,
    created_at  REAL NOT NULL,
    CHECK (from_pool <> to_pool)
) WITHOUT ROWID;
CREATE INDEX migration_jobs_tenant ON migration_jobs (tenant_id, created_at);

CREATE TABLE migration_results (
    job_id   TEXT NOT NULL REFERENCES migration_jobs (job_id),
    seq      INTEGER NOT NULL,                   -- order of the request
    number   TEXT NOT NULL,
    ok       INTEGER NOT NULL CHECK (ok IN (0, 1)),
    reason   TEXT,                               -- why it did not move (NULL when ok)
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
