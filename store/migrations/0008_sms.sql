-- maskline schema 8: SMS through X (SPEC §5, issue 8).
--
-- One row per message taken (answered 202); refused messages (403/404) leave nothing.  The pool
-- settings already exist in `pools` (0001): sms_mode, sms_keywords (JSON list), sms_confirm.
--
-- States and what moves them (api/sms.py):
--   intercepted   stored and reported, not delivered (final)
--   unsubscribe   the sender's "T": recorded, reported, not delivered, not billed (final)
--   pending       held for the tenant's confirmation until confirm_deadline
--   sending       taken for delivery; the smart SMS is being sent (a crash leaves it here: the
--                 service sends it again on start)
--   delivered     the trunk answered the outbound MESSAGE 2xx (final)
--   failed        non-2xx or no answer (final; billed as an intercept)
--   discarded     held and not confirmed in time, or rejected by the tenant (final; billed as an
--                 intercept: it was stored and reported)
-- A final row gets its call record (call_records, call_type 2/3/5, id = the message id) and
-- reports in the same transaction as the state change; billed = 1 once the billing job wrote
-- its ledger line (ledger ref = the message id).
--
-- Content is tenant data: `text` is set to NULL by the retention job after [sms]
-- retention_days (text_deleted_at records when); length and hash stay for disputes.

CREATE TABLE sms_messages (
    id                TEXT PRIMARY KEY,
    sip_call_id       TEXT NOT NULL,               -- the inbound MESSAGE's Call-ID
    pool_key          TEXT NOT NULL REFERENCES pools (pool_key),
    tenant_id         TEXT,                        -- NULL: an operator pool
    sub_id            TEXT,                        -- the binding found, if any
    out_id            TEXT,
    x                 TEXT NOT NULL,
    sender            TEXT,                        -- NULL: anonymous
    recipient         TEXT,                        -- the peer a smart SMS goes to
    phone_no          TEXT,                        -- the binding's A (SPEC §6)
    peer_no           TEXT,                        -- the other party
    call_type         INTEGER CHECK (call_type IS NULL OR call_type IN (2, 3)),  -- if delivered
    state             TEXT NOT NULL CHECK (state IN ('intercepted', 'unsubscribe', 'pending',
                                                     'sending', 'delivered', 'failed',
                                                     'discarded')),
    cause             TEXT NOT NULL,               -- routing.sms.Outcome.cause or a later one
    text              TEXT,                        -- as received; NULL after retention
    text_chars        INTEGER NOT NULL,            -- code points of the text as received
    text_sha256       TEXT NOT NULL,
    segments          INTEGER NOT NULL,            -- billed segments of what was billed
    received_at       REAL NOT NULL,
    confirm_deadline  REAL,                        -- pending: discarded after this
    confirmed_at      REAL,
    sent_at           REAL,                        -- the outbound MESSAGE's final answer
    sip_status        INTEGER,                     -- that answer; NULL: none (timeout)
    finished_at       REAL,                        -- reached a final state
    content_reported  INTEGER NOT NULL DEFAULT 0,  -- an sms_intercept report carried the text
    billed            INTEGER NOT NULL DEFAULT 0,
    text_deleted_at   REAL
);
CREATE INDEX sms_messages_pool_time ON sms_messages (pool_key, received_at);
-- The periodic job's work lists: each small, each partial.
CREATE INDEX sms_messages_pending ON sms_messages (confirm_deadline) WHERE state = 'pending';
CREATE INDEX sms_messages_sending ON sms_messages (received_at) WHERE state = 'sending';
CREATE INDEX sms_messages_unbilled ON sms_messages (finished_at)
    WHERE billed = 0 AND finished_at IS NOT NULL;
CREATE INDEX sms_messages_text_kept ON sms_messages (received_at) WHERE text IS NOT NULL;

-- Recipients who replied T to an X: smart SMS from that X to them are intercepted instead.
CREATE TABLE sms_unsubscribes (
    x           TEXT NOT NULL,
    number      TEXT NOT NULL,
    pool_key    TEXT NOT NULL REFERENCES pools (pool_key),
    message_id  TEXT NOT NULL,                     -- the T message
    created_at  REAL NOT NULL,
    PRIMARY KEY (x, number)
) WITHOUT ROWID;
