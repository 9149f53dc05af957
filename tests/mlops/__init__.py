"""Tests of shared/mlops: the weekly batch, data assets, the registry, promotion, staleness."""
