"""Local tooling, left out of the deployment package (``.funcignore``): the command line
(``python -m shared``), bulk ingest, the weekly batch in this process, the main job (``make
run``), its report, and the seeded generator of raw files."""
