"""Tests of shared/aml (with aml/local): the catalog, requests, lake URIs, the backends, the assets."""
