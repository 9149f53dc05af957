"""Test infrastructure for Durable Functions: the SDK's real replay engine, a fake durable host, an RPC stub.

One module per concern, each usable on its own:

* ``wire``: the SDK's JSON wire format (the custom-object envelope) and the timestamps it writes.
* ``history``: ``History`` builds the JSON the Functions host sends to a Python orchestrator; ``EventType``.
* ``replay``: ``replay(fn, history)`` runs the orchestrator over it exactly as the worker does
  (``DurableOrchestrationContext.from_json`` + ``Orchestrator(fn).handle``) and returns the parsed
  orchestrator state (``ReplayResult``); ``find_function`` / ``activities_of`` read a DFApp or Blueprint.
* ``host``: ``DurableHost`` plays the durable extension for one orchestrator, a dict of activities and the
  orchestrators it calls as sub-orchestrations: it replays the orchestrator episode by episode, runs the
  activities it asks for, fires timers on a virtual clock, delivers queued external events, handles retries and
  ``continue_as_new``, runs sub-orchestrations as instances of their own and reports their end to the parent.
* ``instance``: ``InstanceState``, what the host keeps per instance, and the ``TERMINAL`` runtime statuses.
* ``rpc``: ``DurableRpcStub`` is a loopback HTTP server that answers the extension's HTTP API (the calls
  ``df.DurableOrchestrationClient`` makes) from a ``DurableHost``.
* ``client``: ``call_http_function`` invokes an indexed DFApp HTTP starter the way the worker does;
  ``run_async`` runs the SDK's async code and closes its aiohttp session.

Nothing here talks to Azure; everything runs in-process on 127.0.0.1.
"""
