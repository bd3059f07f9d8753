"""Helpers shared by the test suite and the benchmarks (real daemons on loopback ports)."""
