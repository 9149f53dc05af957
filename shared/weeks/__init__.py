"""Weeks and batches: the sales calendar (:mod:`~shared.weeks.calendar`), the lake's index of the
weeks each ingested file covers (:mod:`~shared.weeks.week_index`), the store master and readiness
(:mod:`~shared.weeks.ready`), announcing a week whose data is complete
(:mod:`~shared.weeks.announce`), and :mod:`~shared.weeks.layout`, the only code that builds
``batches/...`` paths. It stands above the base and below ingestion and aml: it reads the
datasets' facts from the registry (:mod:`shared.sources`), never ingestion's code."""

from shared.weeks.calendar import last_finished_week, week_of, weeks_between
from shared.weeks.ready import REGION_KEY, REQUIRED, Readiness, StoreMaster, readiness, store_master
from shared.weeks.week_index import STATIC, TIMELESS, covered, file_id, index, latest_week

__all__ = [
    "REGION_KEY",
    "REQUIRED",
    "STATIC",
    "TIMELESS",
    "Readiness",
    "StoreMaster",
    "covered",
    "file_id",
    "index",
    "last_finished_week",
    "latest_week",
    "readiness",
    "store_master",
    "week_of",
    "weeks_between",
]
