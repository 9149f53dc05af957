"""The Durable SDK's wire format: JSON with the ``{"__class__", "__module__", "__data__"}`` custom-object
envelope, and the UTC timestamps the extension writes into a history."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from azure.durable_functions.constants import DATETIME_STRING_FORMAT
from azure.functions._durable_functions import _deserialize_custom_object, _serialize_custom_object
from dateutil.parser import parse as _parse_datetime

__all__ = ["DEFAULT_START_TIME", "as_utc", "from_json", "parse_time", "format_time", "to_json"]

DEFAULT_START_TIME = datetime(2025, 1, 6, 6, 0, tzinfo=UTC)


def to_json(value: Any) -> str:
    """Serialize like the SDK's df_dumps in loose mode (custom objects via their to_json)."""
    return json.dumps(value, default=_serialize_custom_object)


def from_json(text: str | None) -> Any:
    """Decode a payload like the SDK's loose-mode decoder, without df_loads' one-time 'no expected_type' notice."""
    if text is None or text == "":
        return None
    return json.loads(text, object_hook=_deserialize_custom_object)


def as_utc(when: datetime) -> datetime:
    """``when`` as an aware UTC datetime (a naive one is taken to be UTC already)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def format_time(when: datetime) -> str:
    """``when`` in the format the extension writes history timestamps in."""
    return as_utc(when).strftime(DATETIME_STRING_FORMAT)


def parse_time(text: str) -> datetime:
    """A timestamp the SDK wrote (a timer's ``fireAt``), as an aware UTC datetime."""
    return as_utc(_parse_datetime(text))
