"""The Hugging Face hub, as every loader asks it: may it be asked, or is only the local cache there to read?"""

from __future__ import annotations

import os
import time

OFF = "the hub is switched off (HF_HUB_OFFLINE=1)"


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` switches the hub off (only the local cache is read), as huggingface_hub reads it."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def hub_unavailable() -> str | None:
    """Why only the local cache can be read (a phrase for an error line), or None when the hub may be asked.

    The hub is unavailable when ``HF_HUB_OFFLINE`` switches it off or when one quick request to it fails to connect.
    Without that request, a machine with no network (an air-gapped cluster) waited about 23 s per model while
    huggingface_hub retried five times, logging each retry, before it read the cache or failed; asked once per
    process, through huggingface_hub's own session, so its proxy and ``HF_ENDPOINT`` settings apply."""
    if hub_offline():
        return OFF
    from huggingface_hub import constants

    failure = _unreachable(constants.ENDPOINT)
    return None if failure is None else f"the hub ({constants.ENDPOINT}) is unreachable ({failure})"


_ASKED: dict[str, tuple[float, str | None]] = {}  # endpoint -> (when it was asked, its failure or None)
#: how long one answer holds: a notebook kernel whose network comes back can download again without a restart
ASK_AGAIN_S = 60.0


def _unreachable(endpoint: str) -> str | None:
    """The first line of the connection failure of one HEAD request to ``endpoint`` (3 s, no retry), or None when
    anything answered: an HTTP error status still means the hub can be asked and say what it has. The answer is
    kept for :data:`ASK_AGAIN_S` seconds."""
    now = time.monotonic()
    asked = _ASKED.get(endpoint)
    if asked is not None and now - asked[0] < ASK_AGAIN_S:
        return asked[1]
    from huggingface_hub.utils import get_session

    failure = None
    try:  # httpx (huggingface_hub 1.x and later) or requests (earlier): either raises only when nothing answered
        get_session().head(endpoint, timeout=3)
    except Exception as e:  # noqa: BLE001 - connection, DNS, proxy, TLS or timeout failures of either library
        failure = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    _ASKED[endpoint] = (now, failure)
    return failure


def forget_answers() -> None:
    """Ask the hub again at the next load (tests; a notebook that has just come back online)."""
    _ASKED.clear()
