"""The textbook baseline: one scale, fp32, L-BFGS on the evaluator's own objective.

Written plainly, as the papers and the usual scripts do it: start from the content image,
``torch.optim.LBFGS`` with a strong-Wolfe line search (without it L-BFGS stalls on these
losses), a fixed number of loss evaluations, no tricks. Its loss after each evaluation is the
evaluator's loss of the current image (the objective is the evaluator's), recorded with the time.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .evaluator import CONTENT_WEIGHT, STYLE_WEIGHT, Evaluator


def run_baseline(evaluator: Evaluator, content: np.ndarray, *, evaluations: int) -> dict:
    """Optimize from ``content`` for ``evaluations`` loss evaluations; return the curve and image."""
    image = evaluator.tensor(content).clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([image], lr=1.0, max_iter=evaluations, max_eval=evaluations,
                                  history_size=100, tolerance_grad=0.0, tolerance_change=0.0,
                                  line_search_fn="strong_wolfe")
    curve: list[tuple[float, float]] = []
    best = {"total": float("inf"), "image": None}
    began = time.perf_counter()

    def closure():
        optimizer.zero_grad()
        content_error, style_error = evaluator.objective(image)
        loss = CONTENT_WEIGHT * content_error + STYLE_WEIGHT * style_error
        loss.backward()
        value = float(loss.detach())
        curve.append((time.perf_counter() - began, value))
        if value < best["total"]:
            best["total"], best["image"] = value, image.detach().clone()
        return loss

    optimizer.step(closure)
    seconds = time.perf_counter() - began
    final = best["image"].clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
    return {"seconds": seconds, "evaluations": len(curve), "curve": curve, "image": final,
            "score": evaluator.score(final)}
