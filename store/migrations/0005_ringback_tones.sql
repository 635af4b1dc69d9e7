-- maskline schema 5: enterprise ringback tones (issue 5).
--
-- A tenant's tone is the value side of a ringback code (a binding's or a pool's
-- {"AXBRing_A": "tone-7"}): this table says which tones exist, where their audio is and how it
-- was made.  The audio itself is an 8 kHz 16-bit mono WAV in [audio] ringback_dir whose name is
-- derived from (tenant_id, tone_id) by media.ringback.tone_file_name (sanitised + a hash), so
-- the call path finds it without reading this table.  Replacing a tone updates its row in
-- place (created_at kept); deleting removes row and file.
CREATE TABLE ringback_tones (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    tone_id      TEXT NOT NULL CHECK (length(tone_id) BETWEEN 1 AND 64),
    file_name    TEXT NOT NULL UNIQUE,
    source       TEXT NOT NULL CHECK (source IN ('upload', 'tts')),
    voice        TEXT,                               -- tts: the espeak-ng voice; upload: NULL
    text         TEXT,                               -- tts: what is said; upload: NULL
    duration_ms  INTEGER NOT NULL CHECK (duration_ms > 0),
    created_at   REAL NOT NULL,                      -- UTC epoch seconds
    updated_at   REAL NOT NULL,
    PRIMARY KEY (tenant_id, tone_id),
    CHECK ((source = 'tts') = (text IS NOT NULL))
) WITHOUT ROWID;
