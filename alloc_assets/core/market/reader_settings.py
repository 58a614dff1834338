"""How a CSV is read when its header does not say: delimiter, decimal mark, date order.

Each setting holds the text a person wrote (``ALLOC_CSV_DELIMITER``, ``ALLOC_CSV_DECIMAL``,
``ALLOC_DATE_FORMAT``; the resource layer reads them from the environment); ``None`` or empty
means sniffed from the file. An unknown value is reported, naming the file being read, when a
file first needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alloc_assets.core.market.io_errors import MarketDataError

DATE_FORMATS = {"iso": "ISO8601", "m/d/y": "%m/%d/%Y", "d/m/y": "%d/%m/%Y"}
DELIMITERS = {",": ",", ";": ";", "\t": "\t", "\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";"}
DECIMALS = {".": ".", ",": ",", "dot": ".", "point": ".", "comma": ","}


@dataclass(frozen=True)
class ReaderSettings:
    """``delimiter``: ``,``, ``;``, a tab (``tab`` or ``\\t``); ``decimal``: ``.`` or ``,``;
    ``date_format``: ``iso``, ``m/d/y`` or ``d/m/y``. ``None`` or empty: sniffed."""

    delimiter: str | None = None
    decimal: str | None = None
    date_format: str | None = None

    def delimiter_for(self, path: Path) -> str | None:
        """The delimiter; None when unset."""
        raw = self.delimiter or ""
        if raw == "\t":
            return "\t"
        key = raw.strip().lower()
        if not key:
            return None
        if key not in DELIMITERS:
            raise MarketDataError(f"ALLOC_CSV_DELIMITER={raw!r} is not a delimiter this reader knows", path,
                                  hint="Set ALLOC_CSV_DELIMITER to ',', ';' or 'tab', or unset it to take the delimiter "
                                       "from the header.")
        return DELIMITERS[key]

    def decimal_for(self, path: Path) -> str | None:
        """The decimal mark; None when unset."""
        raw = self.decimal or ""
        key = raw.strip().lower()
        if not key:
            return None
        if key not in DECIMALS:
            raise MarketDataError(f"ALLOC_CSV_DECIMAL={raw!r} is not a decimal mark", path,
                                  hint="Set ALLOC_CSV_DECIMAL to '.' or ',', or unset it (',' for ';' files, else '.').")
        return DECIMALS[key]

    def date_format_key(self, path: Path, column: str) -> str:
        """The date order's key in :data:`DATE_FORMATS` (lower case); empty when unset."""
        setting = (self.date_format or "").strip().lower()
        if setting and setting not in DATE_FORMATS:
            raise MarketDataError(f"ALLOC_DATE_FORMAT={setting!r} is not one of {', '.join(DATE_FORMATS)}", path,
                                  column=column)
        return setting


#: Every setting sniffed from the file.
SNIFF = ReaderSettings()
