"""The names of landing files: ``<stem>_YYYY-MM-DD.csv|.csv.gz|.parquet``, one trading day each."""

from __future__ import annotations

import re

_DAY_AND_SUFFIX = r"_(\d{4}-\d{2}-\d{2})\.(csv|csv\.gz|parquet)$"
#: A landing file's whole name: a safe stem, ``_YYYY-MM-DD``, and ``.csv``, ``.csv.gz`` or ``.parquet``.
LANDING_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*" + _DAY_AND_SUFFIX)
#: The day a file name ends with (searched: any stem), as read from a source or an accepted copy.
LANDING_NAME = re.compile(_DAY_AND_SUFFIX)
