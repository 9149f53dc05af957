"""Tests of shared/watch: the watch policy, the status route, events."""
