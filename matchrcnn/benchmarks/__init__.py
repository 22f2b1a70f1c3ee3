"""Benchmarks of ``tools/benchmark.py --what NAME``: one module per NAME with ``main(argv)``."""
