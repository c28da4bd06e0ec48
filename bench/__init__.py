"""Benchmarks (not tests): start the real system, drive it over HTTP, print one JSON line a run.

Run them from the repository root as modules, e.g. ``.venv/bin/python -m bench.rounds --help``.
"""
