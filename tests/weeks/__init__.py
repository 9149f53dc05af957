"""Tests of shared/weeks: the calendar, the week index, readiness."""
