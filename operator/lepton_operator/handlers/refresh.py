"""The one status refresh queue (services/status_refresh.py) and what it does per kind.

Each handler module registers how its kind's status is recomputed (`REFRESH`); children's
events, trials' changes and a search's own create or update all only mark the owner here, so
no owner is ever refreshed by two threads at once.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from lepton_operator.handlers.context import fetch
from lepton_operator.services.status_refresh import OwnerKey, StatusRefreshQueue

# kind -> (the owner's body as the API server has it now, *, child=the child or None)
REFRESH: dict[str, Callable[..., None]] = {}


def _refresh_owner(key: OwnerKey, child: dict[str, Any] | None) -> None:
    """What the queue does for a marked owner: read it as the API server has it now (a
    handler's body may be stale), then recompute its status."""
    kind, namespace, name = key
    found = fetch(kind, namespace, name)
    if found is not None:
        REFRESH[kind](found, child=child)


@cache
def status_refresh_queue() -> StatusRefreshQueue:
    return StatusRefreshQueue(_refresh_owner)
