"""Numbers, bindings, route resolution and X allocation (pure; filled by the calls issue)."""
