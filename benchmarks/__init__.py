"""Real-data benchmark harness: protocol data builders, the runner, and the results summary.

See ``benchmarks/README.md``. Not part of ``make test``; its own logic is tested in ``tests/test_benchmarks.py``.
"""
