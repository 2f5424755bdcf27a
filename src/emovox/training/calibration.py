"""Confidence calibration: temperature scaling, expected calibration error, NLL.

A network's softmax is usually over-confident. Temperature scaling divides
the logits by one scalar ``T`` fitted to minimise the negative log-likelihood
on held-out data (Guo et al., 2017); it changes no prediction, only how sure
the model says it is.
"""
from __future__ import annotations

import numpy as np
import torch


def fit_temperature(logits: torch.Tensor, y: torch.Tensor, max_iter: int = 200) -> float:
    """The temperature ``T > 0`` that minimises NLL of ``softmax(logits / T)`` on labels ``y``."""
    logits, y = logits.detach().float(), y.long()
    keep = y >= 0
    logits, y = logits[keep], y[keep]
    if len(y) == 0:
        return 1.0
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return float(np.clip(t, 0.05, 20.0))


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE: the gap between confidence and accuracy, averaged over ``bins`` equal-width confidence bins."""
    probs, y = np.asarray(probs), np.asarray(y)
    if len(y) == 0:
        return float("nan")
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def negative_log_likelihood(probs: np.ndarray, y: np.ndarray) -> float:
    probs, y = np.asarray(probs), np.asarray(y)
    if len(y) == 0:
        return float("nan")
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))


def calibration_report(logits: torch.Tensor, y: torch.Tensor, temperature: float) -> dict[str, float]:
    """ECE (15 bins) and NLL before and after dividing ``logits`` by ``temperature``."""
    keep = (y >= 0).numpy()
    yy = y.numpy()[keep]
    before = torch.softmax(logits, 1).numpy()[keep]
    after = torch.softmax(logits / temperature, 1).numpy()[keep]
    return {
        "temperature": temperature,
        "ece_before": expected_calibration_error(before, yy),
        "ece_after": expected_calibration_error(after, yy),
        "nll_before": negative_log_likelihood(before, yy),
        "nll_after": negative_log_likelihood(after, yy),
    }
