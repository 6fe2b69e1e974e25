"""Maintenance scripts run from the repository root (the CLI reference generator)."""
