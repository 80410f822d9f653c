"""Benchmarks of the appliance, run with `make bench`."""
