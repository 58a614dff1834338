"""The landing zone resource: where new daily market files land (``$ALLOC_HOME/landing``)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from alloc_assets.core.market import landing
from resources.market_source import reader_settings
from resources.settings import default_landing_dir


def _default_settle() -> float:
    return float(os.environ.get("ALLOC_LANDING_SETTLE_SECONDS", "10"))


class LandingZone(dg.ConfigurableResource):
    """The folder the sensor watches, and the accepted copies that runs read."""

    path: str = Field(default="", description="Directory watched by the sensor; empty = $ALLOC_HOME/landing")
    settle_seconds: float = Field(default=-1.0, description="A file modified less than this many seconds ago is "
                                  "left for a later tick; negative = $ALLOC_LANDING_SETTLE_SECONDS or 10")

    def directory(self) -> Path:
        p = Path(self.path or default_landing_dir())
        p.mkdir(parents=True, exist_ok=True)
        return p

    def accepted(self) -> Path:
        return self.directory() / "accepted"

    def rejected(self) -> Path:
        return self.directory() / "rejected"

    def superseded(self) -> Path:
        return self.directory() / "superseded"

    def settle(self) -> float:
        return self.settle_seconds if self.settle_seconds >= 0 else _default_settle()


def validate(path: Path, day: dt.date) -> None:
    """A landing file's rows checked with the CSV settings of the environment (see ``core.market.landing.validate``)."""
    landing.validate(path, day, reader_settings())
