"""Helpers shared across genbench; each lives here once."""
