"""Money budgets on the request path: whether a request whose model has no price may run
(UNPRICED_MODELS), and what a request is charged once it has ended. Only for a key or user with
a money budget; everyone else pays nothing here.

The charge is the cost the logger will record: the same function (shared/prices.py `cost_of`) on
the same tokens and the recorded model, under this proxy's copy of the price table (the same
file; during a reload the two may differ for a few seconds). Upstreams often answer with another
name than the one asked for (a dated snapshot of it): when the recorded name has no price, the
one asked for is charged, so a priced request is never free for its budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from proxy_service.errors import NotRetryable
from proxy_service.state import ProxyState
from shared.budgets import MAX_CHARGED_NANO
from shared.prices import PriceTable, cost_of, nano_usd


class UnpricedModel(NotRetryable):
    """403, not 429: waiting does not help (only a price for the model does), and the SDKs and
    Claude Code retry a 429 for minutes; x-should-retry: false says so to them."""

    status = 403
    code = "model_unpriced"


def check_priced(state: ProxyState, model: str | None) -> None:
    """Before the upstream call of a request under a money budget: an unpriced model is
    counted, and with UNPRICED_MODELS=deny refused."""
    if cost_of(state.prices.table, model, None)["status"] != "unpriced":
        return
    allowed = state.settings.unpriced_models == "allow"
    state.metrics.budgets.count_unpriced(model, "allowed" if allowed else "refused")
    if not allowed:
        named = f"model {model[:256]!r}" if model else "a request that names no model"
        raise UnpricedModel(
            f"{named} has no price in this gateway's price table, and this API key has a "
            "money budget: UNPRICED_MODELS=deny refuses it (ask the operator to price it)"
        )


def charged_nano(
    table: PriceTable | None, models: Iterable[str | None], tokens: Mapping[str, int]
) -> int:
    """Nano-USD of the first of `models` the table prices (0 when it is free, or none is
    priced: nothing is known to charge), at most MAX_CHARGED_NANO."""
    for model in models:
        nano = nano_usd(cost_of(table, model, tokens))
        if nano is not None:
            return min(nano, MAX_CHARGED_NANO)
    return 0
