"""Local tooling, left out of the deployment package (``.funcignore``): the command line
(``python -m shared``), the main job (``make run``), its report, and the seeded generator of
raw files."""
