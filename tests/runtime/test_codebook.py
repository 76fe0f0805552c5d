"""Weight sharing (k-means codebooks) and the compact artifact, on the small trained LeptonNet."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from lepton_runtime.compress.codebook import (
    PRUNED,
    Codebook,
    cluster,
    fine_tune_centroids,
    share_weights,
)
from lepton_runtime.compress.fold import fold_batch_norms
from lepton_runtime.compress.prune import PRUNABLE, apply_sparsity, make_permanent
from lepton_runtime.contract import DatasetSpec, TrainSummary
from lepton_runtime.data import Split, load_splits
from lepton_runtime.errors import JobError
from lepton_runtime.export.artifacts import STATE_DICT, load_float_model, read_card
from lepton_runtime.export.compact import HEADER, read_compact, write_compact
from lepton_runtime.models import build_model
from lepton_runtime.storage import local_path
from lepton_runtime.train.distributed import DistContext
from lepton_runtime.train.loop import evaluate, shard_batches

pytestmark = pytest.mark.runtime

Batches = list[tuple[torch.Tensor, torch.Tensor]]


@pytest.fixture(scope="module")
def digits(mnist_uri: str) -> tuple[Split, Split]:
    """The trained model's 2,000 training digits and all 2,000 held-out ones.

    Every held-out digit, not the 400 the model was scored on in training: weight sharing moves
    accuracy by fractions of a point, and 400 digits count in quarter points.
    """
    train, _ = load_splits(DatasetSpec(uri=mnist_uri, train_limit=2000))
    _, test = load_splits(DatasetSpec(uri=mnist_uri))
    return train, test


@pytest.fixture(scope="module")
def batches(digits: tuple[Split, Split]) -> Batches:
    cpu = DistContext(0, 1, 0, 1, torch.device("cpu"))
    return list(shard_batches(digits[0], 32, cpu, seed=0, epoch=0))


def _float_model(trained: tuple[str, TrainSummary]) -> nn.Module:
    model, _ = load_float_model(trained[0])
    return model


def _pruned(model: nn.Module, sparsity: float) -> nn.Module:
    pruned = copy.deepcopy(model)
    apply_sparsity(pruned, "l1-unstructured", sparsity)
    make_permanent(pruned)
    return pruned.eval()


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{name}.weight": module.weight.detach().clone()
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE)
    }


def _check_shared(before: nn.Module, after: nn.Module, codebooks: dict[str, Codebook]) -> None:
    """Zeros stay zeros, nothing else becomes zero, at most 2**bits values, codebook = weight."""
    old, new = _weights(before), _weights(after)
    assert set(codebooks) == set(new) and len(new) >= 5
    for key, weight in new.items():
        codebook = codebooks[key]
        assert torch.equal(weight == 0, old[key] == 0), key
        assert torch.equal(codebook.indices == PRUNED, old[key] == 0), key
        distinct = torch.unique(weight[weight != 0])
        assert 1 < len(distinct) <= 2**codebook.bits, key
        assert codebook.centroids.dtype == torch.float32
        assert torch.equal(weight, codebook.weight()), key


def test_cluster_finds_few_distinct_values_exactly() -> None:
    weight = torch.tensor([[0.0, 1.0, 1.0], [2.0, 0.0, 3.0], [3.0, 2.0, 0.0]])
    codebook = cluster(weight, bits=2)
    assert codebook.centroids.tolist() == [1.0, 2.0, 3.0]  # the empty fourth cluster is dropped
    assert torch.equal(codebook.weight(), weight)
    assert codebook.indices.tolist() == [[-1, 0, 0], [1, -1, 2], [2, 1, -1]]
    assert cluster(torch.zeros(3, 3), bits=4).centroids.numel() == 0
    with pytest.raises(ValueError, match="bits"):
        cluster(weight, bits=9)


@pytest.mark.parametrize("bits", [2, 5])
def test_kmeans_keeps_zeros_and_shares_at_most_2_to_the_bits_values(
    trained: tuple[str, TrainSummary], bits: int
) -> None:
    pruned = _pruned(_float_model(trained), 0.5)
    untouched = _weights(pruned)
    shared, codebooks = share_weights(pruned, bits)
    _check_shared(pruned, shared, codebooks)
    assert all(torch.equal(w, untouched[k]) for k, w in _weights(pruned).items())


def test_fine_tuning_centroids_keeps_zeros_and_indices(
    trained: tuple[str, TrainSummary], batches: Batches
) -> None:
    pruned = _pruned(_float_model(trained), 0.5)
    shared, codebooks = share_weights(pruned, 2)
    tuned = fine_tune_centroids(shared, codebooks, batches, steps=10, lr=1e-3)
    _check_shared(pruned, shared, tuned)
    for key, codebook in codebooks.items():
        assert torch.equal(tuned[key].indices, codebook.indices), key
        assert not torch.equal(tuned[key].centroids, codebook.centroids), key


def test_fine_tuning_centroids_recovers_a_2_bit_model(
    trained: tuple[str, TrainSummary], digits: tuple[Split, Split], batches: Batches
) -> None:
    shared, codebooks = share_weights(_float_model(trained), 2)

    def loss() -> float:
        with torch.no_grad():
            return sum(float(F.cross_entropy(shared(x), y)) for x, y in batches[:30]) / 30

    loss_before, accuracy_before = loss(), evaluate(shared, digits[1])
    fine_tune_centroids(shared, codebooks, batches, steps=30, lr=1e-3)
    # Measured over four training seeds: 2-bit sharing costs this net 20-75 points; 30 steps
    # cut the loss 3-5x (0.97-2.1 -> 0.28-0.63) and win back 15-55 of them.
    assert loss() < 0.6 * loss_before
    assert evaluate(shared, digits[1]) > accuracy_before + 0.05


def test_five_bit_codebooks_keep_accuracy(
    trained: tuple[str, TrainSummary], digits: tuple[Split, Split]
) -> None:
    model = _float_model(trained)
    shared, _ = share_weights(model, 5)
    drop = evaluate(model, digits[1]) - evaluate(shared, digits[1])
    # Measured on the 2,000 held-out digits: -0.25 to +0.55 points over four training seeds.
    assert drop <= 0.02


def _written(
    trained: tuple[str, TrainSummary], path: Path, sparsity: float, bits: int
) -> nn.Module:
    shared, codebooks = share_weights(_pruned(_float_model(trained), sparsity), bits)
    write_compact(path, shared.state_dict(), codebooks)
    return shared


def test_compact_round_trip_is_exact(
    trained: tuple[str, TrainSummary], batches: Batches, tmp_path: Path
) -> None:
    shared, codebooks = share_weights(_pruned(_float_model(trained), 0.5), 5)
    # Fine-tuned centroids are no longer sorted nor the means k-means left: stored as they are.
    codebooks = fine_tune_centroids(shared, codebooks, batches, steps=5, lr=1e-3)
    path = tmp_path / "model.lpc"
    written = shared.state_dict()
    size = write_compact(path, written, codebooks)
    assert path.stat().st_size == size
    assert [p.name for p in tmp_path.iterdir()] == ["model.lpc"]  # no temp file left behind
    read = read_compact(path)
    assert list(read) == list(written)
    for key, tensor in written.items():
        assert read[key].dtype == tensor.dtype and torch.equal(read[key], tensor), key
    rebuilt = build_model(read_card(trained[0]).spec)
    rebuilt.load_state_dict(read)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), shared(x))
    assert list(read_compact("file://" + str(path))) == list(written)  # URIs read the same


def _flip(offset: Callable[[int], int]) -> Callable[[bytes], bytes]:
    def damage(data: bytes) -> bytes:
        at = offset(len(data))
        return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]

    return damage


DAMAGE: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "payload byte": (_flip(lambda n: n // 2), "corrupt: checksum mismatch"),
    "checksum byte": (_flip(lambda n: HEADER.size - 1), "corrupt: checksum mismatch"),
    "length byte": (_flip(lambda n: 12), "truncated: payload"),
    "magic byte": (_flip(lambda n: 0), "not a compact model file"),
    "truncated payload": (lambda data: data[:-100], "truncated: payload"),
    "truncated header": (lambda data: data[:10], "truncated: 10 bytes"),
    "trailing bytes": (lambda data: data + b"\0", "corrupt: 1 trailing bytes"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_compact_file_fails_naming_the_file(
    trained: tuple[str, TrainSummary], tmp_path: Path, case: str
) -> None:
    path = tmp_path / "model.lpc"
    _written(trained, path, 0.9, 4)
    damage, message = DAMAGE[case]
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(JobError, match=message) as error:
        read_compact(path)
    assert str(path) in str(error.value)


def test_missing_compact_file_and_mismatched_codebook(
    trained: tuple[str, TrainSummary], tmp_path: Path
) -> None:
    with pytest.raises(JobError, match=f"no compact model at {tmp_path / 'none.lpc'}"):
        read_compact(tmp_path / "none.lpc")
    shared, codebooks = share_weights(_float_model(trained), 4)
    state = shared.state_dict()
    key = next(iter(codebooks))
    state[key] = state[key] * 1.5  # not the codebook's values: refuse, keep the good file
    path = tmp_path / "model.lpc"
    path.write_bytes(b"good")
    with pytest.raises(ValueError, match="not its codebook"):
        write_compact(path, state, codebooks)
    assert path.read_bytes() == b"good"


def test_pruned_five_bit_compact_file_is_ten_times_smaller_than_model_pt(
    trained: tuple[str, TrainSummary], tmp_path: Path
) -> None:
    float_file = local_path(trained[0])
    assert float_file is not None
    float_bytes = (float_file / STATE_DICT).stat().st_size
    path = tmp_path / "model.lpc"
    _written(trained, path, 0.9, 5)
    # Measured: 293,571 / 12,908 bytes = 22.7x.
    assert float_bytes / path.stat().st_size >= 10


@pytest.mark.parametrize("bias", [False, True])
def test_folding_batch_norms_keeps_the_function_and_the_zeros(bias: bool) -> None:
    torch.manual_seed(0)
    conv, norm = nn.Conv2d(1, 8, 3, bias=bias), nn.BatchNorm2d(8)
    model = nn.Sequential(conv, norm, nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 4))
    x = torch.rand(16, 1, 10, 10)
    model.train()(x)  # running statistics that are not the initial 0 and 1
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
        conv.weight[conv.weight.abs() < 0.1] = 0.0
    model.eval()
    zeros = conv.weight == 0
    folded = fold_batch_norms(model)
    folded_conv, folded_norm = folded.get_submodule("0"), folded.get_submodule("1")
    assert isinstance(folded_conv, nn.Conv2d) and isinstance(folded_norm, nn.BatchNorm2d)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)
    assert torch.equal(folded_conv.weight == 0, zeros)
    assert torch.equal(folded_norm.weight, torch.ones(8))
    assert folded_norm.running_mean is not None
    assert torch.equal(folded_norm.running_mean, torch.zeros(8))
    assert norm.running_mean is not None and norm.running_mean.abs().sum() > 0  # input untouched
