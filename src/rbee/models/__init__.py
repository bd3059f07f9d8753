"""Model references and the built-in catalog (models that ship inside PyPI packages)."""
