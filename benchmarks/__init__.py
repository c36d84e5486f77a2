"""Benchmarks: one command each, printing a ratio against raw Celery measured in the same run.

See ``benchmarks/README.md``.
"""
