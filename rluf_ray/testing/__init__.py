"""Test doubles that ship with the package (the benchmarks use them too)."""
