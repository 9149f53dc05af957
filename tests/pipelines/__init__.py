"""Tests of pipelines/: the forecast pipeline's steps, metrics and backtest; the benchmarks."""
