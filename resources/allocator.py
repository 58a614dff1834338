"""Settings of the allocator layers (state, regime, risk), shared by their assets."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from alloc_assets.core.market.calendar import RebalanceFrequency
from alloc_assets.core.allocator.feature_config import FeatureConfig
from alloc_assets.core.market.indicator_files import indicator_name
from alloc_assets.core.market.io_errors import MarketDataError
from alloc_assets.core.allocator.regime_config import (
    DEFAULT_SCORE_TERMS,
    HysteresisConfig,
    RegimeConfig,
    RegimeMethod,
    ScoreTerm,
    StressScoreConfig,
    Transform,
)
from alloc_assets.core.allocator.scalars import ApplyConfig, ScalarBasis, ScalarConfig, ScalarOverride
from resources.settings import alloc_home


#: An indicator term of the stress score, fixed a priori: weight 0.25 (the default terms' weights sum
#: to 1, volatility 0.35), no prior level, counted after 63 warm values (a quarter).
INDICATOR_WEIGHT = 0.25
INDICATOR_LEARN_DAYS = 63


def _default_overrides() -> str:
    return os.environ.get("ALLOC_OVERRIDES", str(alloc_home() / "overrides.csv"))


class AllocatorSettings(dg.ConfigurableResource):
    """How the allocator decides: regime method, hysteresis, scalar map, limits, rebalance calendar.

    One resource for all allocator assets, so every partition of one history uses the same settings
    (the incremental carries are keyed by a hash of these settings: changing them recomputes from
    the first day instead of mixing two configurations).
    """

    regime_method: str = Field(default="stress_score", description="stress_score | hmm | jump_model")
    enter_threshold: float = Field(default=0.6, description="P(regime or worse) needed to enter a worse regime")
    exit_threshold: float = Field(default=0.4, description="P(regime or worse) below which the label may improve")
    min_dwell_days: int = Field(default=5, description="Minimum days in a label before it may change")
    multipliers: list[float] = Field(default=[1.0, 0.85, 0.70, 0.55],
                                     description="Scalar per regime NORMAL, ELEVATED, STRESS, CRISIS")
    scalar_basis: str = Field(default="label", description="label (multiplier of the hysteresis label) | "
                              "expected (sum_k p_k m_k, rounded to 0.05, within 0.03 of 1 -> 1)")
    floor: float = Field(default=0.55, description="Least risk scalar")
    max_step: float = Field(default=0.15, description="Largest daily change of the risk scalar")
    vol_target: float = Field(default=0.0, description="Annualised volatility target for the cap (0 = no cap)")
    rebalance_frequency: str = Field(default="weekly", description="Overlay cadence: daily | weekly | monthly. The "
                                     "scalar computed at one overlay date acts from the next, on the drifted book")
    apply_missing_scalar_as: float = Field(default=1.0, description="Scalar applied before the first computed one")
    thrash_limit: int = Field(default=20, description="WARN above this many transitions in 252 days")
    score_indicators: list[str] = Field(default=[], description="Indicators (market_indicators) added to the stress "
                                        "score: 'name[:log][:weight]', e.g. 'vix:log:0.25' (weight 0.25 when not "
                                        "given; negative = lower means more stress). Each is standardised on its "
                                        "own history before each date and counts after 63 warm values.")
    overrides_file: str = Field(default="", description="CSV start,end,scalar,reason of human overrides (optional "
                                "file); empty = $ALLOC_OVERRIDES or $ALLOC_HOME/overrides.csv, resolved when used")

    def feature_config(self) -> FeatureConfig:
        return FeatureConfig()

    def score_terms(self) -> tuple[ScoreTerm, ...]:
        """The default stress-score terms plus one per ``score_indicators`` entry."""
        extra: list[ScoreTerm] = []
        taken = {t.feature for t in DEFAULT_SCORE_TERMS}
        for entry in self.score_indicators:
            raw, *opts = [p.strip() for p in entry.split(":")]
            name = indicator_name(raw, strict=False)
            if not name or name in taken:
                raise ValueError(f"score_indicators entry {entry!r}: {name or raw!r} is "
                                 + ("empty" if not name else "already a term of the stress score (listed twice, or a "
                                    "built-in feature)"))
            taken.add(name)
            transform, weight = Transform.NONE, INDICATOR_WEIGHT
            for o in opts:
                if o.lower() == "log":
                    transform = Transform.LOG
                else:
                    try:
                        weight = float(o)
                    except ValueError:
                        raise ValueError(f"score_indicators entry {entry!r}: {o!r} is neither 'log' nor a weight") from None
            extra.append(ScoreTerm(name, weight, transform, learn_days=INDICATOR_LEARN_DAYS))
        return DEFAULT_SCORE_TERMS + tuple(extra)

    def regime_config(self) -> RegimeConfig:
        return RegimeConfig(
            method=RegimeMethod(self.regime_method),
            score=StressScoreConfig(terms=self.score_terms()),
            hysteresis=HysteresisConfig(enter=self.enter_threshold, exit=self.exit_threshold,
                                        min_dwell_days=self.min_dwell_days),
        )

    def scalar_config(self) -> ScalarConfig:
        return ScalarConfig(multipliers=tuple(self.multipliers), basis=ScalarBasis(self.scalar_basis),
                            floor=self.floor, max_step=self.max_step,
                            vol_target=self.vol_target or None)

    def apply_config(self) -> ApplyConfig:
        return ApplyConfig(frequency=RebalanceFrequency(self.rebalance_frequency),
                           apply_missing_scalar_as=self.apply_missing_scalar_as,
                           overrides=tuple(self.overrides()))

    def config_hash(self, layer: str, indicators: list[str] | tuple[str, ...] = ()) -> str:
        """Hash of the settings a layer's carry depends on (that layer and the ones above it); the
        state's also covers the stored indicators (a new one recomputes the state from day one)."""
        parts = {"state": ["feature"], "regime": ["feature", "regime"], "risk": ["feature", "regime", "scalar"]}[layer]
        blob = {"feature": repr(self.feature_config()), "regime": repr(self.regime_config()),
                "scalar": repr(self.scalar_config())}
        key = [blob[p] for p in parts] + ([sorted(indicators)] if indicators else [])
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]

    def overrides(self) -> list[ScalarOverride]:
        """Human overrides from ``overrides_file`` (absent file: none). Errors name file, row, column."""
        path = Path(self.overrides_file or _default_overrides())
        if not path.exists():
            return []
        out = []
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"start", "end", "scalar"} - set(reader.fieldnames or [])
            if missing:
                raise MarketDataError(f"overrides need columns start,end,scalar[,reason]; missing {sorted(missing)}", path, row=0)
            for i, row in enumerate(reader, start=1):
                try:
                    scalar = float(row["scalar"])
                except ValueError:
                    raise MarketDataError(f"scalar {row['scalar']!r} is not a number", path, row=i, column="scalar") from None
                if not 0.0 <= scalar <= 1.0:
                    raise MarketDataError(f"scalar {scalar} is outside [0, 1]", path, row=i, column="scalar")
                out.append(ScalarOverride(row["start"].strip(), row["end"].strip(), scalar, (row.get("reason") or "").strip()))
        return out
