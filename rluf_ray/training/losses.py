"""Per-pair DPO losses, per-pair weighting and reduction: pure torch, no trainer, no Ray.

The losses return one value per pair (like torchtune's ``DPOLoss``); weighting and reduction happen
outside them, so the uncertainty weights of CFA multiply each pair's loss *before* the batch
reduction:

- ``mean`` (the original research code): ``sum_i w_i * l_i / B``;
- ``normalized``: ``sum_i w_i * l_i / sum_i w_i`` (zero, with its graph kept, when all weights are 0).

The formulas match TRL 1.16's ``DPOTrainer`` for ``sigmoid``, ``hinge`` and ``ipo`` (ipo normalises
the log-ratios by completion length as TRL does). ``label_smoothing`` > 0 with ``sigmoid`` is cDPO
(conservative DPO): ``-(1-e) log s(b*d) - e log s(-b*d)``; TRL 1.16 only uses it for its robust/EXO
losses, so with the default 0 both agree exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_TYPES: tuple[str, ...] = ("sigmoid", "hinge", "ipo")
REDUCTIONS: tuple[str, ...] = ("mean", "normalized")


def per_pair_losses(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Compute one DPO loss per pair from summed completion log-probs.

    Args:
        chosen_logps: The policy's summed log-prob of each chosen completion, shape ``(B,)`` for the
            B pairs of the batch.
        rejected_logps: The policy's summed log-prob of each rejected completion, shape ``(B,)``.
        ref_chosen_logps: The reference model's summed log-prob of each chosen completion, shape ``(B,)``.
        ref_rejected_logps: The reference model's summed log-prob of each rejected completion, shape
            ``(B,)``.
        beta: The DPO temperature (> 0; for ``ipo`` the target margin is ``1/(2*beta)``).
        loss_type: One of ``LOSS_TYPES``: ``sigmoid``, ``hinge`` or ``ipo``.
        label_smoothing: With ``sigmoid``, the assumed share e of flipped labels (cDPO), in [0, 0.5);
            0 is plain DPO. Ignored by the other loss types.
        chosen_lengths: Completion token count of each chosen answer, shape ``(B,)``; required for
            ``ipo`` (counts below 1 are taken as 1).
        rejected_lengths: Completion token count of each rejected answer, shape ``(B,)``; required for
            ``ipo``.

    Returns:
        The unweighted, unreduced losses, shape ``(B,)``.

    Raises:
        ValueError: If ``loss_type`` is unknown, or ``ipo`` lacks the lengths.
    """
    chosen_logratios = chosen_logps - ref_chosen_logps
    rejected_logratios = rejected_logps - ref_rejected_logps
    if loss_type == "sigmoid":
        logits = beta * (chosen_logratios - rejected_logratios)
        if label_smoothing == 0.0:
            return -F.logsigmoid(logits)
        return -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    if loss_type == "hinge":
        return torch.relu(1 - beta * (chosen_logratios - rejected_logratios))
    if loss_type == "ipo":
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError("ipo needs chosen_lengths and rejected_lengths")
        delta = chosen_logratios / chosen_lengths.clamp(
            min=1.0
        ) - rejected_logratios / rejected_lengths.clamp(min=1.0)
        return (delta - 1 / (2 * beta)) ** 2
    raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {', '.join(LOSS_TYPES)}")


def chosen_nll(chosen_logps: torch.Tensor, chosen_lengths: torch.Tensor) -> torch.Tensor:
    """Compute the per-pair negative log-likelihood of the chosen completion, averaged over its tokens.

    Added to the DPO loss as ``rpo_alpha * nll`` (RPO, Pang et al. 2024), it keeps the chosen answers
    likely while DPO pushes the pair apart, against the collapse in which both lose probability. TRL
    1.16 expresses the same as ``loss_type=["sigmoid", "sft"], loss_weights=[1, alpha]`` with the
    tokens averaged over the batch; here they are averaged per pair, so a pair's weight multiplies
    its whole loss, NLL included.

    Args:
        chosen_logps: The policy's summed log-prob of each chosen completion, shape ``(B,)``.
        chosen_lengths: Completion token count of each chosen answer, shape ``(B,)`` (counts below 1
            are taken as 1).

    Returns:
        The per-token NLL of each pair, shape ``(B,)``.
    """
    return -chosen_logps / chosen_lengths.to(chosen_logps.dtype).clamp(min=1.0)


def reduce_weighted(
    losses: torch.Tensor,
    weights: torch.Tensor,
    reduction: str = "mean",
    step_weight: float | torch.Tensor | None = None,
    step_scale: float = 1.0,
) -> torch.Tensor:
    """Multiply per-pair losses by their weights, then reduce: ``mean`` or ``normalized``.

    ``mean`` divides by the batch size B (the original); ``normalized`` by the sum of weights
    (an all-zero batch gives ``0 * sum(l)``: a zero loss whose gradient is exactly zero).

    ``step_weight``: with ``normalized``, the sum of weights over the whole optimiser step (every
    micro-batch of every rank) instead of this micro-batch's; ``step_scale`` (gradient-accumulation
    steps x ranks) undoes the trainer's averaging over micro-batches and ranks, so the step's gradient
    is exactly that of ``sum(w*l) / sum(w)`` over the global batch.

    Args:
        losses: The per-pair losses, shape ``(B,)``.
        weights: The per-pair weights (>= 0), shape ``(B,)``; cast to the losses' dtype and device.
        reduction: ``mean`` or ``normalized`` (one of ``REDUCTIONS``).
        step_weight: With ``normalized``: the weight sum over the whole optimiser step, a float or a
            tensor of shape ``()``; None uses this batch's sum (and ignores ``step_scale``). Unused by
            ``mean``.
        step_scale: With ``step_weight``: gradient-accumulation steps x ranks.

    Returns:
        The scalar loss (a 0-d tensor that keeps the graph, also when it is zero).

    Raises:
        ValueError: If the shapes differ or ``reduction`` is unknown.
    """
    if losses.shape != weights.shape:
        raise ValueError(f"losses {tuple(losses.shape)} and weights {tuple(weights.shape)} differ in shape")
    weights = weights.to(dtype=losses.dtype, device=losses.device)
    weighted = weights * losses
    if reduction == "mean":
        return weighted.sum() / losses.numel()
    if reduction == "normalized":
        total = weights.sum() if step_weight is None else step_weight
        if float(total) == 0.0:
            return weighted.sum() * 0.0
        scale = 1.0 if step_weight is None else step_scale
        return weighted.sum() * scale / total
    raise ValueError(f"unknown reduction {reduction!r}; expected one of {', '.join(REDUCTIONS)}")


def drop_zero_enabled(reduction: str, drop_zero_weight: bool | None) -> bool:
    """Tell whether zero-weight pairs are filtered out before training.

    Args:
        reduction: The configured reduction, ``mean`` or ``normalized``.
        drop_zero_weight: The configured ``dpo.drop_zero_weight``; None means on with ``normalized``
            and off with ``mean``.

    Returns:
        True when zero-weight pairs are dropped.
    """
    if drop_zero_weight is None:
        return reduction == "normalized"
    return bool(drop_zero_weight)


def validate_weights(weights: list[float]) -> None:
    """Reject weights that would corrupt the loss: NaN, infinite or negative.

    Args:
        weights: The pair weights, in pair order (the error names the first bad one's index).

    Raises:
        ValueError: If a weight is NaN, infinite or negative.
    """
    for i, w in enumerate(weights):
        if w != w or w in (float("inf"), float("-inf")):
            raise ValueError(f"pair {i}: weight {w} is not finite")
        if w < 0:
            raise ValueError(f"pair {i}: weight {w} is negative")
