"""Billing: tariffs, rating, the ledger's month views, statistics and CSV export (SPEC §7)."""
