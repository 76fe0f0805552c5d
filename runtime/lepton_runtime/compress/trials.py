"""The accuracy guard: which trials to run, in which order, and when one is good enough.

Trials go from most to least aggressive, so the first one that passes is the smallest model
the guard allows and the search stops there. Backing off lowers sparsity first, by growing the
fraction of kept weights 1.5x per trial (0.9 -> 0.85 -> 0.775: size grows gently, accuracy
recovers quickly). A codebook trial also widens its codebook by one bit per step (up to
8 bits: 2**8 shared values per layer is as good as float on these networks). The last trial
(when there is more than one) drops quantization altogether.
"""

from __future__ import annotations

from dataclasses import dataclass

from lepton_runtime.contract import CODEBOOK_BITS_MAX, AccuracyGuard, CodebookSpec, PruningSpec

BACKOFF = 1.5


@dataclass(frozen=True)
class TrialPlan:
    """Target sparsity and quantization of one trial."""

    sparsity: float
    quantization: str
    codebook_bits: int | None = None
    """Index width, for codebook trials."""


def plan_trials(
    pruning: PruningSpec,
    quantization: str,
    guard: AccuracyGuard,
    codebook: CodebookSpec | None = None,
) -> list[TrialPlan]:
    """At most `guard.max_trials` plans, most aggressive first, without duplicates."""
    target = pruning.target_sparsity if pruning.method != "none" else 0.0
    count = guard.max_trials
    backs_off_quantization = quantization != "none" and count > 1
    quantized_trials = count - 1 if backs_off_quantization else count
    bits = (codebook or CodebookSpec()).bits
    plans = [
        TrialPlan(
            round(max(0.0, 1.0 - (1.0 - target) * BACKOFF**k), 4) if target else 0.0,
            quantization,
            min(CODEBOOK_BITS_MAX, bits + k) if quantization == "codebook" else None,
        )
        for k in range(quantized_trials)
    ]
    if backs_off_quantization:
        plans.append(TrialPlan(plans[-1].sparsity, "none"))
    unique: list[TrialPlan] = []
    for plan in plans:
        if plan not in unique:
            unique.append(plan)
    return unique


def allowed_drop(baseline: float, guard: AccuracyGuard) -> float:
    """The largest accuracy drop (as a fraction) the guard accepts."""
    if guard.mode == "relative":
        return guard.max_accuracy_drop * baseline
    return guard.max_accuracy_drop


def verdict(baseline: float, accuracy: float, guard: AccuracyGuard) -> tuple[bool, str]:
    """(passes, reason) for a trial's accuracy."""
    drop = baseline - accuracy
    limit = allowed_drop(baseline, guard)
    if drop <= limit + 1e-9:
        return True, f"accuracy drop {drop * 100:.2f} points within the {limit * 100:.2f} allowed"
    return False, f"accuracy drop {drop * 100:.2f} points exceeds the {limit * 100:.2f} allowed"
