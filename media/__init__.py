"""SDP rewriting, RTP relay, recording and prompts (filled by the calls and media issues)."""

# Before any module of the package: media.sdp may be compiled (build_compiled.py), and then it
# must have been compiled from the sdp.py beside it, or the import fails naming it and the fix.
from sip.compiled_guard import verify_compiled

verify_compiled(__path__[0], __name__)
