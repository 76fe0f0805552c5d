"""Ask the served model about every held-out digit over Triton's HTTP API, as clients would.

One image per request from a few concurrent clients: that is how an endpoint is used, and it
lets Triton's dynamic batcher do its job, so latency and throughput mean what they say.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import tritonclient.http as httpclient
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from lepton_runtime.export.triton_config import INPUT_NAME, OUTPUT_NAME

DEFAULT_CONCURRENCY = 4


class CamelModel(BaseModel):
    """camelCase on the wire, like the runtime's summaries inside summary.json."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ServingResult(CamelModel):
    """What the endpoint did with the held-out set."""

    requests: int
    """Inference requests sent (one image each)."""
    correct: int
    """Requests whose top-1 class matched the label."""
    accuracy: float
    """correct / requests: accuracy as served, through Triton."""
    latency_ms_p50: float
    """Median request latency seen by the client, HTTP included."""
    latency_ms_p99: float
    """99th percentile request latency."""
    throughput_per_second: float
    """Requests completed per second of wall time."""
    concurrency: int
    """Clients sending requests at the same time."""


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def query_endpoint(
    url: str,
    model_name: str,
    images: NDArray[Any],
    labels: NDArray[Any],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_request: Callable[[], None] | None = None,
) -> ServingResult:
    """Send every image once; `on_request` is called after each answer (for progress)."""
    predictions = np.full(len(labels), -1, dtype=np.int64)
    latencies: list[float] = []
    lock = threading.Lock()
    stopping = threading.Event()  # set on Ctrl-C: clients quit instead of finishing the set

    def client_loop(first: int) -> None:
        client = httpclient.InferenceServerClient(url)  # one per thread: not thread-safe
        try:
            for index in range(first, len(labels), concurrency):
                if stopping.is_set():
                    return
                request = httpclient.InferInput(INPUT_NAME, [1, *images.shape[1:]], "FP32")
                request.set_data_from_numpy(images[index : index + 1].astype(np.float32))
                started = time.perf_counter()
                logits = client.infer(model_name, [request]).as_numpy(OUTPUT_NAME)
                elapsed = time.perf_counter() - started
                predictions[index] = int(np.argmax(logits))
                with lock:
                    latencies.append(elapsed * 1000)
                if on_request is not None:
                    on_request()
        finally:
            client.close()

    started = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=concurrency)
    try:
        for future in [pool.submit(client_loop, first) for first in range(concurrency)]:
            future.result()
    except BaseException:
        stopping.set()
        raise
    finally:
        pool.shutdown(wait=not stopping.is_set(), cancel_futures=True)
    wall = time.perf_counter() - started
    correct = int((predictions == labels).sum())
    return ServingResult(
        requests=len(labels),
        correct=correct,
        accuracy=correct / len(labels),
        latency_ms_p50=statistics.median(latencies),
        latency_ms_p99=_percentile(latencies, 0.99),
        throughput_per_second=len(labels) / wall,
        concurrency=concurrency,
    )
