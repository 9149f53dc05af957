"""ForecastOps domain core: lake I/O, standard datasets, raw-format mappings, ingestion.

Nothing in this package imports ``azure.functions``: the same code serves the Functions
host, the command line (``python -m shared``) and the tests.
"""

__version__ = "0.1.0"
