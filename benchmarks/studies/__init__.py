"""One-off studies: each module answers one question once, about the data or a trained model.

The harness (``benchmarks.run``, ``benchmarks.data``, ``benchmarks.summary``, ...) runs and records any config; a
study reads its runs, checkpoints or data and prints (or writes a section of ``RESULTS.md``) the answer. The
first sentence of every study's docstring is its question; ``benchmarks/README.md`` ("Studies") lists them.
Their own logic is tested in ``tests/test_studies.py``.
"""
