"""Wire schemas (pydantic). No behaviour lives here."""
