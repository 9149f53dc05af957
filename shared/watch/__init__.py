"""The durable watch: following AML runs to their end and answering ADF. The policy (backoff,
stuck limit, timeout, the health gates), the one decision loop that the durable orchestrator
and the command line both drive, one status read per tick for a whole batch, AML's job
events as wake-ups, and the watch's HTTP API."""
