"""Benchmarks that print figures; not tests (`make bench`)."""
