"""Shared test helpers: the one fake clock, builders and fixtures the test files share."""
