"""Benchmarks: scripts that print a table and a ratio against a named baseline."""
