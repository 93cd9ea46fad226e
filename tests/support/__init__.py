"""Test infrastructure shared by all packages' tests (not shipped)."""
