-- maskline schema 7: delivery of the reports of SPEC §6 (issue 6).
--
-- report_outbox (schema 1) is the queue itself: one row per report, seq = delivery order, a
-- unique id the receiver de-duplicates on.  Both channels read it:
--   * push: a tenant's reports of every type that has a URL here (its own or the tenant's
--     'default' URL) are POSTed as JSON arrays; a failed batch gets attempts + 1, last_error and
--     next_attempt_at = now + back-off, so a restart resumes where the last process stopped;
--   * pull: reports of the types without a push URL are leased by POST /v1/reports/pull:
--     next_attempt_at = the end of the visibility timeout (a leased row is invisible to both
--     channels until then) and acknowledged by id (delivered_at).
-- next_attempt_at is thus "not before" for either channel: push back-off or pull lease.

CREATE TABLE report_push_urls (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    -- a report type, or 'default': the URL of every type without its own
    report_type  TEXT NOT NULL CHECK (report_type IN ('default', 'start', 'ring', 'pickup', 'end',
                                                      'recording', 'sms_intercept',
                                                      'pool_warning')),
    url          TEXT NOT NULL,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    PRIMARY KEY (tenant_id, report_type)
) WITHOUT ROWID;

-- How a delivered report went out.
ALTER TABLE report_outbox ADD COLUMN delivered_via TEXT
    CHECK (delivered_via IS NULL OR delivered_via IN ('push', 'pull'));

-- Delivery reads a tenant's queue (below), never all due reports at once or a pool's reports:
-- the two indexes of schema 1 for that would only cost every insert two more index writes.
DROP INDEX report_outbox_due;
DROP INDEX report_outbox_pool;

-- A tenant's undelivered reports in order: the push worker's head of line and the pull queue.
CREATE INDEX report_outbox_tenant_pending ON report_outbox (tenant_id, seq)
    WHERE delivered_at IS NULL;
-- Pull keeps a call's reports in order: a report waits while an earlier one of its call is leased.
CREATE INDEX report_outbox_call_pending ON report_outbox (call_id, seq)
    WHERE delivered_at IS NULL AND call_id IS NOT NULL;
-- Retention of delivered rows.
CREATE INDEX report_outbox_delivered ON report_outbox (delivered_at)
    WHERE delivered_at IS NOT NULL;

-- Pool warnings (SPEC §3): whether a pool is past a threshold, so that a warning report is
-- written once per crossing (in the same transaction as the state turning active), not once per
-- bind, and not again after a restart.
CREATE TABLE pool_warning_states (
    pool_key    TEXT NOT NULL REFERENCES pools (pool_key),
    warning     TEXT NOT NULL CHECK (warning IN ('free_numbers', 'utilisation')),
    active      INTEGER NOT NULL CHECK (active IN (0, 1)),
    changed_at  REAL NOT NULL,
    PRIMARY KEY (pool_key, warning)
) WITHOUT ROWID;
