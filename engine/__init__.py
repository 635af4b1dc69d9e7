"""The B2BUA engine: asyncio transports, call control, process wiring and the CLI."""
