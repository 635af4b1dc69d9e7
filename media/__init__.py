"""SDP rewriting, RTP relay, recording and prompts (filled by the calls and media issues)."""
