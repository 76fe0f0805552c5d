"""Render Triton's `config.pbtxt` (protobuf text format of `inference.ModelConfig`).

Written by hand rather than through the protobuf classes so the operator-side image needs no
tritonclient; tests parse every rendered config with tritonclient's `model_config_pb2`, which is
exactly what Triton does at load time.
"""

from __future__ import annotations

from dataclasses import dataclass

from lepton_runtime.contract import Backend, DynamicBatching, ExportFormat, InstanceGroup

INPUT_NAME = "INPUT__0"
OUTPUT_NAME = "OUTPUT__0"

_PLATFORM_LINE = {
    "pytorch_libtorch": 'platform: "pytorch_libtorch"',
    "onnxruntime": 'platform: "onnxruntime_onnx"',
    "python": 'backend: "python"',
}

MODEL_FILE = {"pytorch_libtorch": "model.pt", "onnxruntime": "model.onnx", "python": "model.py"}
FORMAT_PARAMETER = "lepton_model_format"
"""The config parameter that tells the python backend's model.py which file to run."""


@dataclass(frozen=True)
class TritonModelSpec:
    """Everything config.pbtxt says about one model."""

    name: str
    backend: Backend
    input_shape: list[int]
    num_classes: int
    max_batch_size: int
    dynamic_batching: DynamicBatching
    instance_group: InstanceGroup
    warmup: bool
    model_format: ExportFormat | None = None
    """python backend: the file model.py runs (None: its default, model.onnx when present)."""


def _list(values: list[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _dims(shape: list[int], batched: bool) -> str:
    """Without Triton batching the batch dimension is part of the (variable) dims."""
    return _list(shape if batched else [-1, *shape])


def render_config(spec: TritonModelSpec) -> str:
    """The config.pbtxt text for `spec`."""
    batched = spec.max_batch_size > 0
    lines = [
        f'name: "{spec.name}"',
        _PLATFORM_LINE[spec.backend],
        f"max_batch_size: {spec.max_batch_size}",
        "input [",
        "  {",
        f'    name: "{INPUT_NAME}"',
        "    data_type: TYPE_FP32",
        f"    dims: {_dims(spec.input_shape, batched)}",
        "  }",
        "]",
        "output [",
        "  {",
        f'    name: "{OUTPUT_NAME}"',
        "    data_type: TYPE_FP32",
        f"    dims: {_dims([spec.num_classes], batched)}",
        "  }",
        "]",
        "instance_group [",
        "  {",
        f"    count: {spec.instance_group.count}",
        f"    kind: KIND_{spec.instance_group.kind.upper()}",
        "  }",
        "]",
    ]
    if batched and spec.dynamic_batching.enabled:
        lines.append("dynamic_batching {")
        if spec.dynamic_batching.preferred_batch_sizes:
            sizes = ", ".join(str(s) for s in spec.dynamic_batching.preferred_batch_sizes)
            lines.append(f"  preferred_batch_size: [ {sizes} ]")
        lines.append(
            f"  max_queue_delay_microseconds: {spec.dynamic_batching.max_queue_delay_microseconds}"
        )
        lines.append("}")
    if spec.model_format is not None:
        lines += [
            "parameters {",
            f'  key: "{FORMAT_PARAMETER}"',
            f'  value {{ string_value: "{spec.model_format}" }}',
            "}",
        ]
    if spec.warmup:
        lines += [
            "model_warmup [",
            "  {",
            '    name: "zeros"',
            f"    batch_size: {1 if batched else 0}",
            "    inputs {",
            f'      key: "{INPUT_NAME}"',
            "      value {",
            "        data_type: TYPE_FP32",
            f"        dims: {_list(spec.input_shape if batched else [1, *spec.input_shape])}",
            "        zero_data: true",
            "      }",
            "    }",
            "  }",
            "]",
        ]
    return "\n".join(lines) + "\n"
