"""Helpers for running fusestore against local servers: tests, demos and benchmarks."""
