"""Write the final message where Kubernetes picks it up (`terminationMessagePath`).

Kubernetes keeps at most 4 KiB of it; long summaries are trimmed (per-epoch histories first) so
the JSON stays parseable.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from pydantic import BaseModel

log = logging.getLogger(__name__)
MAX_BYTES = 4096


def write_termination_message(path: str, text: str) -> None:
    """Best effort: a missing /dev/termination-log (running locally) must not fail the run.

    Written whole or not at all: run locally, every rank of a torchrun job shares one path,
    and two plain writes of summaries of different lengths interleave into invalid JSON. So
    the text goes to a file of this process's own and replaces the message in one step; where
    that cannot be done (the kubelet bind-mounts /dev/termination-log), it is written in place.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            scratch.write_text(text)
            scratch.replace(target)
        except OSError:
            scratch.unlink(missing_ok=True)
            target.write_text(text)
    except OSError as error:
        log.warning("cannot write termination message to %s: %s", path, error)


def summary_json(summary: BaseModel) -> str:
    """camelCase JSON of a summary, trimmed below Kubernetes' 4 KiB limit when needed."""
    data = summary.model_dump(mode="json", by_alias=True)
    text = json.dumps(data, separators=(",", ":"))
    for key in ("epochSeconds", "accuracyHistory", "lossHistory", "trials"):
        if len(text.encode()) <= MAX_BYTES:
            break
        data.pop(key, None)
        text = json.dumps(data, separators=(",", ":"))
    # A tuning table (a grid search's, say) keeps its first candidates; the choice is whole.
    candidates = (data.get("tuning") or {}).get("candidates") or []
    while len(text.encode()) > MAX_BYTES and candidates:
        candidates.pop()
        text = json.dumps(data, separators=(",", ":"))
    return text
