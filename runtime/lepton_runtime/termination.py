"""Write the final message where Kubernetes picks it up (`terminationMessagePath`).

Kubernetes keeps at most 4 KiB of it; long summaries are trimmed (per-epoch histories first) so
the JSON stays parseable.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import BaseModel

log = logging.getLogger(__name__)
MAX_BYTES = 4096


def write_termination_message(path: str, text: str) -> None:
    """Best effort: a missing /dev/termination-log (running locally) must not fail the run."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
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
    return text
