"""One pandera model per stored artifact, plus the checks that need run-time facts.

Every asset validates its frame *before* it writes: blocking (ERROR) failures stop the write, and
each check becomes a Dagster check result whose metadata carries the offending rows. Check names
are module constants so tests, assets and the UI agree. One module per domain (``market``,
``allocator``, ``portfolio``) and ``checks`` for what they share; every public name is re-exported
here, so ``from alloc_assets.schemas import X`` works for all of them.
"""

from alloc_assets.schemas import allocator, checks, market, portfolio
from alloc_assets.schemas.allocator import *  # noqa: F403
from alloc_assets.schemas.checks import *  # noqa: F403
from alloc_assets.schemas.market import *  # noqa: F403
from alloc_assets.schemas.portfolio import *  # noqa: F403

__all__ = [*checks.__all__, *market.__all__, *allocator.__all__, *portfolio.__all__]
