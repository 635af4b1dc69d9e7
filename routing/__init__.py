"""Numbers, bindings, route resolution and X allocation (pure; filled by the calls issue)."""

# Before any module of the package: some of its modules may be compiled (build_compiled.py),
# and then each must have been compiled from the .py beside it, or the import fails here
# naming it and the fix.
from sip.compiled_guard import verify_compiled

verify_compiled(__path__[0], __name__)
