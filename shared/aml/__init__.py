"""The ADF -> Azure ML bridge: which pipelines may run (the catalog), what a request to run
one must hold, the run API (submit, read, cancel) over one backend interface, and its two
backends: ``azureml`` (the service, through azure-ai-ml) and ``local`` (this machine)."""
