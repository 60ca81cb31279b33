"""Gatehouse benchmark harness (see bench/README.md)."""
