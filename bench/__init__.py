"""Benchmarks: load generators and the reference servers they are compared against.

Nothing here ships with the gateway; `python -m bench.messages` is the entry point.
"""
