"""Tests of the deployment: infra/, adf/, the GitHub workflows and the names they share."""
