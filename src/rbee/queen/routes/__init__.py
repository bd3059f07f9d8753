"""Thin HTTP handlers; behaviour lives in the services they call."""
