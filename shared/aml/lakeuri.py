"""Lake paths as Azure ML data URIs, and back: the one place that knows how the lake's
containers appear in the workspace.

A lake path's first segment is a container of the lake's storage account (``raw``,
``curated``, ``runs``...: infra/modules/lake.bicep), and an AML datastore addresses one
container, so the workspace has one datastore per container, ``lake_<container>``
(infra/modules/aml.bicep), and a lake path ``<container>/<rest>`` is the URI
``azureml://datastores/lake_<container>/paths/<rest>``.

:func:`lake_path` reads that form back, and also the legacy one, a single datastore ``lake``
over the whole account (``azureml://datastores/lake/paths/<container>/<rest>``), which older
requests, data records and registered models name; any other datastore is not the lake
(``None``). Neither function accepts a ``..`` or ``.`` segment. Only :func:`lake_uri` holds
to the container list: a legacy URI reads back whatever its first segment is.

No azure-ai-ml here: the request validation and the local backend use it too.
"""

from __future__ import annotations

import re

__all__ = [
    "DATASTORE_PREFIX",
    "aml_path",
    "LAKE_CONTAINERS",
    "LEGACY_DATASTORE",
    "canonical",
    "container_of",
    "datastore_name",
    "datastore_names",
    "lake_path",
    "lake_uri",
    "normal_scheme",
]

#: the lake's containers (infra/modules/lake.bicep declares the same; tests/deploy/test_infra.py checks)
LAKE_CONTAINERS = ("raw", "curated", "quarantine", "runs", "models", "batches", "oracle")
#: a container's datastore is this prefix and the container's name
DATASTORE_PREFIX = "lake_"
#: the single datastore over the whole account that URIs used to name
LEGACY_DATASTORE = "lake"

# azureml://[subscriptions/<s>/resourcegroups/<g>/workspaces/<w>/]datastores/<store>/paths/<path>
_URI = re.compile(
    r"^azureml://(?i:subscriptions/[^/]+/resourcegroups/[^/]+/workspaces/[^/]+/)?datastores/([^/]+)/paths/(.*)$"
)


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def normal_scheme(value: str) -> str:
    """``value`` with its URI scheme, if it has one, in lower case: schemes are
    case-insensitive (RFC 3986), so ``AZUREML://`` and ``FILE://`` are the same as ``azureml://``
    and ``file://`` and every check here reads them alike."""
    m = _SCHEME.match(value)
    return value if m is None else m.group(0).lower() + value[m.end() :]


def _segments(path: str, what: str) -> list[str]:
    """``path``'s segments (no leading or trailing slash); ``ValueError`` for ``..`` or ``.``."""
    parts = [p for p in path.strip("/").split("/") if p != ""]
    if any(p in ("..", ".") for p in parts) or "\\" in path:
        raise ValueError(f"{what} {path!r}: no '..' or '.' segments (nor backslashes)")
    return parts


def datastore_name(container: str) -> str:
    """The datastore over ``container`` (``curated`` -> ``lake_curated``)."""
    if container not in LAKE_CONTAINERS:
        raise ValueError(f"{container!r} is not a lake container ({', '.join(LAKE_CONTAINERS)})")
    return f"{DATASTORE_PREFIX}{container}"


def datastore_names() -> list[str]:
    """Every datastore a URI built here can name."""
    return [datastore_name(c) for c in LAKE_CONTAINERS]


def container_of(datastore: str) -> str | None:
    """The container a lake datastore addresses (``lake_runs`` -> ``runs``); ``None`` for any
    other datastore (the legacy ``lake`` included: it addresses the whole account)."""
    if datastore.startswith(DATASTORE_PREFIX) and datastore[len(DATASTORE_PREFIX) :] in LAKE_CONTAINERS:
        return datastore[len(DATASTORE_PREFIX) :]
    return None


def lake_uri(lake_path: str) -> str:
    """``<container>/<rest>`` -> ``azureml://datastores/lake_<container>/paths/<rest>`` (``rest``
    may be empty: the container itself, ``.../paths/``). ``ValueError`` for an empty path, a
    container the lake does not have, or a ``..`` segment."""
    parts = _segments(lake_path, "lake path")
    if not parts:
        raise ValueError("an empty lake path names no container")
    return f"azureml://datastores/{datastore_name(parts[0])}/paths/{'/'.join(parts[1:])}"


def lake_path(uri: str) -> str | None:
    """The lake path an AML data URI names: ``<container>/<rest>`` (no trailing slash) for a
    ``lake_<container>`` datastore or the legacy ``lake`` one; ``None`` for anything else (another
    datastore, not a datastore URI). ``ValueError`` for a ``..`` segment in a lake URI."""
    m = _URI.match(normal_scheme(uri))
    if m is None:
        return None
    store, rest = m.group(1), m.group(2)
    container = container_of(store)
    if container is not None:
        parts = [container, *_segments(rest, "path")]
    elif store == LEGACY_DATASTORE:
        # the whole account: any first segment is a lake path (the local lake has no containers)
        parts = _segments(rest, "path")
        if not parts:
            return None
    else:
        return None
    return "/".join(parts)


def canonical(uri: str) -> str:
    """A lake URI in the per-container form (a legacy one rewritten); anything else, a legacy
    one whose first segment is no container included, unchanged."""
    uri = normal_scheme(uri)
    path = lake_path(uri)
    if path is None or path.split("/", 1)[0] not in LAKE_CONTAINERS:
        return uri
    return lake_uri(path)


def aml_path(path: str) -> str:
    """An input's path as AML resolves it: a lake path (``curated/x``) or a legacy lake URI as
    the URI on its container's datastore; a data asset reference, another datastore's URI or
    anything else unchanged (its scheme in lower case)."""
    path = normal_scheme(path)
    if path.startswith("azureml:"):
        return canonical(path)
    if "://" not in path and path.strip("/").split("/", 1)[0] in LAKE_CONTAINERS:
        return lake_uri(path)
    return path
