"""Helpers shared by the tests, one module per purpose."""
