"""What a file covers: the weeks and keys of a dataset's curated rows, gathered batch by batch
as they are written; the manifest's ``coverage``, which the index of weeks reads
(:mod:`shared.weeks.week_index`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared import sources
from shared.weeks.calendar import week_of

if TYPE_CHECKING:  # pyarrow is imported where rows are counted
    import pyarrow as pa

#: the column whose distinct values a manifest's coverage lists, per dataset (the registry's)
KEY_COLUMN = {name: d.key_column for name, d in sources.DATASETS.items()}
#: the column a dataset's weeks are read from (timeless datasets have none)
DATE_COLUMN = {name: d.date_column for name, d in sources.DATASETS.items() if d.date_column}
#: beyond this many distinct keys a manifest lists none (``keys: null, keys_truncated: true``)
MAX_KEYS = 5000
_SATURDAY = 5


class Coverage:
    """The weeks and keys a dataset's curated rows cover, gathered batch by batch in bounded
    memory: the set of weeks (a few hundred at most) and at most :data:`MAX_KEYS` distinct keys.

    Weather counts observed rows only (a forecast covers no week), and a week only if its
    Saturday is observed (a week observed up to its Friday is not over in the file)."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self._date = DATE_COLUMN.get(dataset)
        self._key = KEY_COLUMN.get(dataset)
        self._keys: set[str] | None = set()
        self._weeks: set[str] = set()

    def add(self, table: pa.Table) -> None:
        import pyarrow.compute as pc

        if not table.num_rows:
            return
        if self.dataset == "weather_daily":
            table = table.filter(pc.equal(table["kind"], "observed"))
            if not table.num_rows:
                return
        if self._date is not None:
            days = [d for d in pc.unique(table[self._date]).to_pylist() if d is not None]
            if self.dataset == "weather_daily":
                days = [d for d in days if d.weekday() == _SATURDAY]
            self._weeks.update(week_of(d) for d in days)
        if self._key is not None and self._keys is not None:
            self._keys.update(v for v in pc.unique(table[self._key]).to_pylist() if v is not None)
            if len(self._keys) > MAX_KEYS:
                self._keys = None  # memory stays bounded: past the cap, no key is kept

    def result(self) -> dict[str, Any]:
        """The manifest's ``coverage`` object: ``weeks`` (sorted; null for a timeless dataset),
        ``first_week`` and ``last_week`` (the first and last of them, or null), the keys."""
        weeks = sorted(self._weeks) if self._date is not None else None
        keys = None
        if self._key is not None and self._keys is not None:
            keys = {self._key: sorted(self._keys)}
        return {
            "first_week": weeks[0] if weeks else None,
            "last_week": weeks[-1] if weeks else None,
            "weeks": weeks,
            "keys": keys,
            "keys_truncated": self._key is not None and self._keys is None,
        }
