"""A group's one-line failure reason is published (the batch's summary, lineage, the report):
it never carries an absolute path of the node that ran the step (issue 23 review)."""

from __future__ import annotations

import pytest

from tests.drivers import forecast_step_module

pergroup = forecast_step_module("pergroup")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            FileNotFoundError(
                2,
                "No such file or directory",
                "/mnt/azureml/cr/j/abc123/cap/data-capability/wd/parts/west.large.fast.pkl",
            ),
            "FileNotFoundError: [Errno 2] No such file or directory: '.../west.large.fast.pkl'",
        ),
        (
            OSError(r"cannot write C:\Users\me\AppData\Local\Temp\x\out.csv: disk full"),
            "OSError: cannot write .../out.csv: disk full",
        ),
        (
            ValueError("group west.large.fast has 3 rows (needs 8)"),
            "ValueError: group west.large.fast has 3 rows (needs 8)",
        ),
        (RuntimeError("first line /tmp/tmpab12/model\nsecond line /etc/passwd"), "RuntimeError: first line .../model"),
    ],
    ids=["aml-mount", "windows", "no-path", "multi-line"],
)
def test_a_reason_names_no_absolute_path(error, expected):
    assert pergroup.one_line(error) == expected


def test_a_relative_name_and_a_ratio_are_kept():
    assert pergroup.one_line(ValueError("parts/west.pkl is not west's (units/week 3/4)")) == (
        "ValueError: parts/west.pkl is not west's (units/week 3/4)"
    )
