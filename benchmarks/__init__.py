"""Real-data benchmark harness: protocol data builders, the runner, the results summary and the speed benchmarks.

The one-off studies are the subpackage :mod:`benchmarks.studies`. See ``benchmarks/README.md``. Not part of
``make test``; the harness's own logic is tested in ``tests/test_benchmarks.py``, the studies' in
``tests/test_studies.py``.
"""
