"""Runnable examples of programs that talk to the gateway (the reference brand agent)."""
