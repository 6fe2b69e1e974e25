"""Monitoring backends, one module each, behind the MetricProvider protocol."""
