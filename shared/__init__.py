"""ForecastOps domain core. Nothing in this package imports ``azure.functions``: the same code
serves the Functions host (the function folders are thin adapters over it), the command line
(``python -m shared``) and the tests.

Where things are:

- :mod:`shared.weeks`: weeks and batches (the calendar, the index of weeks, the store master and
  readiness, announcing a complete week, and ``layout``, the only code that builds ``batches/...``
  paths);
- :mod:`shared.ingestion`: raw vendor files -> standard CSVs, manifests and quarantine
  (datasets, mapping formats, readers, conversion, duplicate search, aggregation, coverage, the
  service, and ``entrypoints``: what the blob triggers and the re-ingest route call);
- :mod:`shared.aml`: the ADF -> Azure ML bridge (run statuses and the backend interface, the
  pipeline catalog and run requests, the run API, the ``azureml`` and ``local`` backends);
- :mod:`shared.watch`: the durable watch (policy and gates, the one decision loop the
  orchestrator and the command line both drive, the watch's routes);
- :mod:`shared.mlops`: the weekly batch (its sequence, steps, start and context) and the model
  registry (model cards, the promotion rules, the registry in the lake and in Azure ML, the
  staleness check);
- :mod:`shared.tooling`: local tooling, not deployed (command line, bulk ingest, the weekly
  batch in this process, main job, report, data generator);
- beside them, what every room uses: :mod:`shared.settings`, :mod:`shared.lake`,
  :mod:`shared.telemetry`, :mod:`shared.http` (answers and problem lists),
  :mod:`shared.clock` (time and ISO timestamps), :mod:`shared.sources` (the registry of sources and
  datasets, ``sources.json``), :mod:`shared.health` (the health policy: gates,
  promotion margin, staleness, the baseline rule), and :mod:`shared.runtime`, the composition
  root that builds the worker's clients once.
"""

from pathlib import Path

__version__ = "0.1.0"

#: the app's folder (``pipelines/``, ``samples/``), the parent of this package
ROOT = Path(__file__).resolve().parent.parent
