"""Blocks: the public block API (``base``), the registry, and the built-in blocks."""
