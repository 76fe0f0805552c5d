"""Serving benchmark: the real Triton server with and without dynamic batching.

    python -m bench.serving          (after bench.training; also bench.compression if it ran)

Eight concurrent closed-loop gRPC clients (the tuner's load generator, runtime/lepton_runtime/
tune/load.py: pre-serialized requests on one asyncio channel, since it shares the two cores
with the server) send single-image requests for a fixed time. The same
model is served twice: dynamic batching on (requests merged into one forward pass) and off
(one request per forward pass). The in-process TorchScript throughput at batch 1 is the
baseline of what one Python process gets without any server. Headline figures are for the
int8 model of bench.compression (its `sparse_int8` entry); `float_model` repeats them for the
float LeptonNet of bench.training, whose CPU forward pass is compute-bound.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from bench.common import cache_dir, mnist_uri, report
from lepton_runtime import package, storage
from lepton_runtime.contract import DatasetSpec, PackageConfig
from lepton_runtime.data import load_splits
from lepton_runtime.export.artifacts import ONNX, load_scripted
from lepton_runtime.export.onnx import INPUT_NAME, onnx_session
from lepton_runtime.serve.local import LocalTritonServer
from lepton_runtime.tune.load import closed_loop, single_image_requests

CONCURRENCY = 8
SECONDS = 10.0
WARMUP_SECONDS = 1.0


def model_uris() -> dict[str, str]:
    """The float model of bench.training and, if present, the compressed one."""
    found = {
        name: str(path)
        for name, path in (
            ("float", cache_dir() / "leptonnet-mnist"),
            ("int8", cache_dir() / "compressed" / "sparse-int8"),
        )
        if (path / "model.json").exists()
    }
    if "float" not in found:
        raise SystemExit("run `python -m bench.training` first (no trained model in the cache)")
    return found


def measure(uri: str, images: NDArray[np.float32]) -> dict[str, Any]:
    """All serving figures for one model."""
    batched = serve_and_measure(uri, True, images)
    unbatched = serve_and_measure(uri, False, images)
    return {
        "model_uri": uri,
        "throughput_batching": batched["throughput"],
        "throughput_no_batching": unbatched["throughput"],
        "batching_gain": batched["throughput"] / unbatched["throughput"],
        "p50_ms": batched["p50_ms"],
        "p99_ms": batched["p99_ms"],
        "p50_ms_no_batching": unbatched["p50_ms"],
        "p99_ms_no_batching": unbatched["p99_ms"],
        "torch_inprocess_throughput": torch_inprocess(uri, images),
    }


def load_test(server: LocalTritonServer, images: NDArray[np.float32]) -> dict[str, float]:
    """Throughput and latency percentiles of CONCURRENCY closed-loop clients."""
    payloads = single_image_requests("mnist", images[:32])
    result = closed_loop(
        server.grpc_url, payloads, CONCURRENCY, SECONDS, warmup_seconds=WARMUP_SECONDS
    )
    return {
        "throughput": result.throughput,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "requests": result.requests,
    }


def serve_and_measure(uri: str, batching: bool, images: NDArray[np.float32]) -> dict[str, float]:
    """Package the model with or without the dynamic batcher, serve it, load-test it."""
    with tempfile.TemporaryDirectory(prefix="lepton-bench-") as repo:
        package.run(
            PackageConfig.model_validate(
                {
                    "modelUri": uri,
                    "modelName": "mnist",
                    "backend": "python",
                    "maxBatchSize": 64,
                    "dynamicBatching": {
                        "enabled": batching,
                        "preferredBatchSizes": [CONCURRENCY],
                        "maxQueueDelayMicroseconds": 2000,
                    },
                    "repository": repo,
                    "runtime": {"terminationMessagePath": str(Path(repo) / "t")},
                }
            )
        )
        with LocalTritonServer(repo) as server:
            return load_test(server, images)


def _best_rate(call: Callable[[Any], object], inputs: list[Any], rounds: int) -> float:
    """Calls per second of `call` over `inputs` in turn, the best of `rounds` 3 s runs after a
    warm-up."""
    for item in inputs[:20]:
        call(item)
    best = 0.0
    for _ in range(rounds):
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < 3.0:
            call(inputs[count % len(inputs)])
            count += 1
        best = max(best, count / (time.perf_counter() - started))
    return best


def torch_inprocess(uri: str, images: NDArray[np.float32], rounds: int = 3) -> float:
    """Batch-1 requests per second of the same TorchScript model called in-process: the best
    of `rounds` 3 s runs. One run is enough to be slowed by whatever else the machine does
    (bench.tuning once saw 6,213/s where its other runs saw 8,844 and 9,351), and a baseline
    that is too low would flatter the server path."""
    torch.set_num_threads(1)
    model = load_scripted(uri)
    tensors = [torch.from_numpy(image[None]) for image in images]
    with torch.inference_mode():
        return _best_rate(model, tensors, rounds)


def onnx_inprocess(uri: str, images: NDArray[np.float32], rounds: int = 3) -> float:
    """Batch-1 requests per second of the model's ONNX file in ONNX Runtime, one thread, in
    process: the best of `rounds` 3 s runs, as torch_inprocess."""
    session = onnx_session(storage.read_bytes(storage.join(uri, ONNX)), threads=1)
    run = session.run  # type: ignore[attr-defined]
    feeds = [{INPUT_NAME: image[None]} for image in images]
    return _best_rate(lambda feed: run(None, feed), feeds, rounds)


def main() -> None:
    """Run and report."""
    uris = model_uris()
    _, test = load_splits(DatasetSpec(uri=mnist_uri(), test_limit=256))
    images = test.images.numpy()
    served = "int8" if "int8" in uris else "float"
    figures: dict[str, Any] = {
        "model": served,
        **measure(uris[served], images),
        "concurrency": CONCURRENCY,
        "seconds_per_run": SECONDS,
        "protocol": "gRPC (pre-serialized requests, asyncio), one 1x1x28x28 image per request, "
        "python backend, "
        "1 instance, 1 torch thread",
    }
    if served == "int8":
        figures["float_model"] = measure(uris["float"], images)
    report("serving", figures)


if __name__ == "__main__":
    main()
