"""Tests of shared's base modules: settings, the lake, telemetry, health, sources, and the package layout."""
