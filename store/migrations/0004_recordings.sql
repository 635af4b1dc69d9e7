-- maskline schema 4: call recordings (issue 5).
--
-- One row per recording the engine wrote: the "recording ready" event (the reports issue reads
-- new rows in id order) and the authoritative link call → WAV file.  The engine writes the call
-- record (call_records) and the WAV independently, in either order; whichever comes second
-- completes call_records.recording_path:
--   * the WAV first: the trigger below fills recording_path when the call record is inserted;
--   * the record first: attaching the recording (store/recordings.py) updates the record.
-- Retention deletes the file, sets deleted_at here and clears call_records.recording_path; the
-- row itself stays (billing and reports may still name the call's recording).
CREATE TABLE recording_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,   -- event order for the reports
    call_id     TEXT NOT NULL UNIQUE,                -- maskline's call reference (call_records)
    pool_key    TEXT,                                -- NULL: a call of no pool
    tenant_id   TEXT,                                -- the pool's tenant when written
    path        TEXT NOT NULL,                       -- WAV as written (absolute or cwd-relative)
    duration_s  REAL NOT NULL CHECK (duration_s >= 0),
    size_bytes  INTEGER NOT NULL CHECK (size_bytes >= 0),
    created_at  REAL NOT NULL,                       -- UTC epoch seconds: retention counts here
    deleted_at  REAL                                 -- file removed by retention; NULL: present
);
CREATE INDEX recording_events_kept ON recording_events (created_at) WHERE deleted_at IS NULL;
CREATE INDEX recording_events_pool ON recording_events (pool_key, id);

CREATE TRIGGER call_records_recording_path AFTER INSERT ON call_records
WHEN NEW.recording_path IS NULL
     AND EXISTS (SELECT 1 FROM recording_events
                 WHERE call_id = NEW.call_id AND deleted_at IS NULL)
BEGIN
    UPDATE call_records
       SET recording_path = (SELECT path FROM recording_events WHERE call_id = NEW.call_id)
     WHERE id = NEW.id;
END;
