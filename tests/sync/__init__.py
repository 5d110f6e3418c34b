"""Tests for the pure stages of the sync pipeline (parse, decide, correlate, sanitize)."""
