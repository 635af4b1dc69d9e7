"""SQLite persistence (filled by the calls issue)."""
