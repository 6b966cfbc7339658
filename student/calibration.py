"""Calibration: how far a student's probabilities are from its accuracy, and temperature scaling.

Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017) divides
every logit by one number T fitted on held-out data to minimise the negative log-likelihood. It
changes no prediction (argmax is unchanged), only how sure the student says it is: a fine-tuned
encoder trained until its training loss is near zero says 0.999 on texts it gets wrong, and T > 1
softens that. The expected calibration error (ECE) is the usual measure: predictions binned by
confidence, the gap between each bin's accuracy and its mean confidence, weighted by bin size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ECE_BINS = 15
# The temperature is searched in [1/20, 20]: beyond that the dev set is telling us nothing more than
# "all right" (T -> 0) or "all noise" (T -> inf).
T_MIN, T_MAX = 0.05, 20.0


def expected_calibration_error(probs: torch.Tensor, gold: torch.Tensor, bins: int = ECE_BINS) -> float:
    """ECE of probabilities [n, classes] against gold class ids [n]: sum over equal-width confidence
    bins of (bin size / n) * |bin accuracy - bin mean confidence|, confidence being the top
    probability. A confidence of exactly 0 or a bin edge b/bins falls in the bin below it, as in Guo et al."""
    if len(gold) == 0:
        return 0.0
    confidence, predicted = probs.max(dim=-1)
    correct = (predicted == gold).float()
    # Bin b holds confidences in (b/bins, (b+1)/bins]; ceil(c * bins) - 1 is that b.
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        if count:
            gap = correct[members].mean() - confidence[members].mean()
            total += count / len(gold) * abs(float(gap))
    return total


def nll(logits: torch.Tensor, gold: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the gold classes under softmax(logits / temperature)."""
    return float(F.cross_entropy(logits.double() / temperature, gold)) if len(gold) else 0.0


def fit_temperature(logits: torch.Tensor, gold: torch.Tensor, tolerance: float = 1e-4) -> float:
    """The T in [T_MIN, T_MAX] minimising the NLL of softmax(logits / T) (1.0 on no data).

    The NLL is convex in 1/T, so it has one minimum along log T as well: a golden-section search
    over log T finds it without a gradient or a learning rate to tune."""
    if len(gold) == 0:
        return 1.0
    logits = logits.detach().double()
    low, high = math.log(T_MIN), math.log(T_MAX)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(logits, gold, math.exp(a)), nll(logits, gold, math.exp(b))
    while high - low > tolerance:
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(logits, gold, math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(logits, gold, math.exp(b))
    return math.exp((low + high) / 2)
