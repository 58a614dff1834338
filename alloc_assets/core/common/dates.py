"""Dates as the warehouse and the reports write them."""

from __future__ import annotations

import numpy as np


def iso_day(day) -> str:
    """``YYYY-MM-DD`` of a date-like value (``numpy.datetime64``, ``datetime.date``, ISO string)."""
    return str(np.datetime64(day, "D"))


def iso_day_or_none(day) -> str | None:
    """:func:`iso_day`, with ``None`` kept as ``None``."""
    return None if day is None else iso_day(day)
