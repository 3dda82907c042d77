"""Which price sources serve an area, in which order, built once per instance.

Default order: the transmission operator's own feed where it has one (Energi Data Service for
the Danish areas), ENTSO-E for every area it knows, Energy-Charts as the last resort. Settings
can override the order per area (``HPSTEER_PRICE_SOURCE_ORDER``). With ``price_feed = replay``
the bundled historical files stand in for every provider.

Provider modules (and httpx) are imported only when a live source is built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hpsteer.domain.market import PriceArea
from hpsteer.errors import InvalidInput
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.sources.prices import PriceSource

__all__ = ["DEFAULT_ORDER", "price_sources_for"]

DEFAULT_ORDER: dict[PriceArea, tuple[str, ...]] = {
    PriceArea.DK1: ("energidataservice", "entsoe", "energycharts"),
    PriceArea.DK2: ("energidataservice", "entsoe", "energycharts"),
}
_FALLBACK_ORDER: tuple[str, ...] = ("entsoe", "energidataservice", "energycharts")


def _entsoe(deps: Dependencies) -> PriceSource:
    from hpsteer.sources.entsoe import EntsoePriceSource

    return EntsoePriceSource(
        deps.secrets, token_secret=deps.settings.entsoe_token_secret, clock=deps.clock
    )


def _energidataservice(deps: Dependencies) -> PriceSource:
    from hpsteer.sources.energidataservice import EnergiDataServicePriceSource

    return EnergiDataServicePriceSource(clock=deps.clock)


def _energycharts(deps: Dependencies) -> PriceSource:
    from hpsteer.sources.energycharts import EnergyChartsPriceSource

    return EnergyChartsPriceSource(clock=deps.clock)


def _replay(deps: Dependencies) -> PriceSource:
    from hpsteer.sources.replay_prices import ReplayPriceSource

    return ReplayPriceSource(clock=deps.clock)


_FACTORIES: dict[str, Callable[[Dependencies], PriceSource]] = {
    "entsoe": _entsoe,
    "energidataservice": _energidataservice,
    "energycharts": _energycharts,
    "replay": _replay,
}


def _source(name: str, deps: Dependencies) -> PriceSource:
    if name not in _FACTORIES:
        raise InvalidInput(f"unknown price source {name!r}; known: {', '.join(_FACTORIES)}")
    factory = _FACTORIES[name]
    return deps.singleton(f"price-source:{name}", lambda: factory(deps))


def price_sources_for(area: PriceArea, deps: Dependencies) -> Sequence[PriceSource]:
    settings = deps.settings
    if settings.price_feed == "replay":
        names: Sequence[str] = ("replay",)
    else:
        names = settings.price_source_order.get(area.value) or DEFAULT_ORDER.get(
            area, _FALLBACK_ORDER
        )
    return [source for source in (_source(n, deps) for n in names) if source.supports(area)]
