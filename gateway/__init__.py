"""Switchboard's I/O shell: HTTP, storage, the bus, delivery, notifications and the CLI."""
