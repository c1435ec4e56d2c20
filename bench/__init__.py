"""Benchmarks that print medians and ratios measured side by side in one run (never asserted)."""
