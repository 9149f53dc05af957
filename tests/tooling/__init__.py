"""Tests of shared/tooling: the command line and the main job's report."""
