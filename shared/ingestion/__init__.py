"""Data conditioning: raw vendor files (weather, shipments, store demographics, in any layout
a mapping file describes) become the standard CSVs of the lake, with a manifest accounting
for every row and a quarantine for what breaks the rules. The blob triggers, the re-ingest
route and the command line all call :func:`shared.ingestion.service.ingest`."""
