"""Tests of shared/ingestion: formats, datasets, ingestion and re-ingestion."""
