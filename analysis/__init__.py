"""Pure statistics and judging rules: no I/O, no Temporal; used by activities and benchmarks."""
