"""Timing suite for lstm_ag: one training step by every method, side by side with peers.

Run it from the repository root with ``python -m benchmarks`` (``--help`` for the options,
``--quick`` for a few seconds' smoke run). ``bench_step`` holds the cases in the asv style
(``setup`` + ``time_*``); ``run`` interleaves them, takes medians and writes the table and JSON,
timing in a child process without the OpenBLAS pin (``child``). ``python -m benchmarks.threads``
compares 1 and 2 BLAS threads operation by operation. See ``benchmarks/README.md``.
"""
