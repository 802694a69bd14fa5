"""Per-pair DPO losses, weighting and reduction against hand-written math."""

from __future__ import annotations

import math

import pytest
import torch

from rluf_ray.training.losses import drop_zero_enabled, per_pair_losses, reduce_weighted, validate_weights


def _t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def _logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


# pair 0: chosen log-ratio -1 - (-2) = 1, rejected log-ratio -3 - (-2) = -1 -> delta 2
# pair 1: chosen log-ratio -4 - (-3) = -1, rejected log-ratio -1 - (-1) = 0 -> delta -1
CH, RJ, RCH, RRJ = _t(-1.0, -4.0), _t(-3.0, -1.0), _t(-2.0, -3.0), _t(-2.0, -1.0)


def test_sigmoid_matches_hand_math():
    out = per_pair_losses(CH, RJ, RCH, RRJ, beta=0.5)
    assert out.tolist() == pytest.approx([-_logsig(0.5 * 2), -_logsig(0.5 * -1)], rel=1e-12)


def test_sigmoid_label_smoothing_is_cdpo():
    eps = 0.1
    out = per_pair_losses(CH, RJ, RCH, RRJ, beta=0.5, label_smoothing=eps)
    expected = [-(1 - eps) * _logsig(0.5 * d) - eps * _logsig(-0.5 * d) for d in (2.0, -1.0)]
    assert out.tolist() == pytest.approx(expected, rel=1e-12)


def test_hinge_and_ipo_match_hand_math():
    assert per_pair_losses(CH, RJ, RCH, RRJ, beta=0.5, loss_type="hinge").tolist() == pytest.approx(
        [max(0.0, 1 - 0.5 * 2), 1 - 0.5 * -1]
    )
    lc, lr = _t(2.0, 4.0), _t(1.0, 2.0)
    out = per_pair_losses(CH, RJ, RCH, RRJ, beta=0.5, loss_type="ipo", chosen_lengths=lc, rejected_lengths=lr)
    # pair 0: 1/2 - (-1)/1 = 1.5 ; pair 1: -1/4 - 0/2 = -0.25 ; target 1/(2*0.5) = 1
    assert out.tolist() == pytest.approx([(1.5 - 1) ** 2, (-0.25 - 1) ** 2])
    with pytest.raises(ValueError, match="ipo needs"):
        per_pair_losses(CH, RJ, RCH, RRJ, beta=0.5, loss_type="ipo")
    with pytest.raises(ValueError, match="unknown loss_type"):
        per_pair_losses(CH, RJ, RCH, RRJ, beta=0.5, loss_type="kto")


def test_mean_reduction_divides_by_batch_size():
    losses, w = _t(2.0, 4.0, 6.0), _t(0.0, 0.5, 2.0)
    assert float(reduce_weighted(losses, w, "mean")) == pytest.approx((0 * 2 + 0.5 * 4 + 2 * 6) / 3)


def test_normalized_reduction_divides_by_weight_sum():
    losses, w = _t(2.0, 4.0, 6.0), _t(0.0, 0.5, 2.0)
    assert float(reduce_weighted(losses, w, "normalized")) == pytest.approx((0.5 * 4 + 2 * 6) / 2.5)


def test_all_zero_weights_give_zero_loss_and_zero_gradient():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    for reduction in ("mean", "normalized"):
        loss = reduce_weighted(x * 3, torch.zeros(2), reduction)
        (g,) = torch.autograd.grad(loss, x)
        assert float(loss) == 0.0 and torch.count_nonzero(g) == 0


def test_weight_scales_gradient_linearly_under_mean():
    x = torch.tensor([0.3, -0.7], requires_grad=True)
    losses = per_pair_losses(x, -x, torch.zeros(2), torch.zeros(2), beta=1.0)
    (g1,) = torch.autograd.grad(
        reduce_weighted(losses, torch.tensor([1.0, 1.0]), "mean"), x, retain_graph=True
    )
    (g2,) = torch.autograd.grad(reduce_weighted(losses, torch.tensor([2.0, 0.0]), "mean"), x)
    assert g2[0] == pytest.approx(2 * g1[0]) and g2[1] == 0.0


def test_shape_and_reduction_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        reduce_weighted(_t(1.0, 2.0), _t(1.0), "mean")
    with pytest.raises(ValueError, match="unknown reduction"):
        reduce_weighted(_t(1.0), _t(1.0), "sum")


def test_drop_zero_default_and_weight_validation():
    assert drop_zero_enabled("normalized", None) is True
    assert drop_zero_enabled("mean", None) is False
    assert drop_zero_enabled("mean", True) is True
    assert drop_zero_enabled("normalized", False) is False
    validate_weights([0.0, 0.5, 2.0])
    for bad, msg in ((float("nan"), "not finite"), (float("inf"), "not finite"), (-0.1, "negative")):
        with pytest.raises(ValueError, match=msg):
            validate_weights([1.0, bad])


def test_chosen_nll_is_the_per_token_mean():
    from rluf_ray.training.losses import chosen_nll

    # summed log-probs -6 over 3 tokens -> 2 nats a token; -1 over 0 tokens counts as 1 token
    out = chosen_nll(_t(-6.0, -1.0), torch.tensor([3, 0]))
    torch.testing.assert_close(out, _t(2.0, 1.0))
