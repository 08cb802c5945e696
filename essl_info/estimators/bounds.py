"""Variational lower bounds on mutual information as pure functions of a critic score matrix.

``scores`` is a (b, b) tensor with ``scores[i, j] = f(x_i, y_j)``: the diagonal holds b
samples of the joint p(x, y), the b(b-1) off-diagonal entries samples of the product of
marginals p(x)p(y). Every bound returns a 0-dim tensor in nats. Poole, Ozair, van den Oord,
Alemi, Tucker 2019, "On variational bounds of mutual information" (ICML) is the reference
for the notation; the formulas follow Song & Ermon 2020 (ermongroup/smile-mi-estimator).

- InfoNCE (van den Oord et al. 2018):  mean_i [f_ii - log sum_j exp f_ij] + log b  <= log b.
- NWJ (Nguyen, Wainwright, Jordan 2010; "f-GAN KL"):  E_p[f] - e^-1 E_q[e^f].
- DV (Donsker-Varadhan):  E_p[f] - log E_q[e^f]; MINE (Belghazi et al. 2018) trains it with a
  moving average of E_q[e^f] in the gradient's denominator to reduce the bias of the
  minibatch gradient.
- SMILE (Song & Ermon 2020):  the DV value with the partition term computed on
  clip(f, -tau, tau), trained with the Jensen-Shannon (f-GAN) gradient.

``BOUNDS`` lists them for ``neural.py``: each with the value reported on held-out data and the
training objective, i.e. the value carrying the gradient of the training surrogate through the
``value.detach() + (surrogate - surrogate.detach())`` construction (MINE, SMILE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch.nn import functional as F


def _check(scores: torch.Tensor) -> int:
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1] or scores.shape[0] < 2:
        raise ValueError(f"scores must be a square (b, b) matrix with b >= 2, got shape "
                         f"{tuple(scores.shape)}")
    return scores.shape[0]


def logmeanexp_offdiag(scores: torch.Tensor) -> torch.Tensor:
    """log of the mean of exp(scores[i, j]) over the b(b-1) pairs i != j (0-dim)."""
    b = _check(scores)
    eye = torch.eye(b, dtype=torch.bool, device=scores.device)
    off = scores.masked_fill(eye, -math.inf)
    return torch.logsumexp(off.reshape(-1), 0) - math.log(b * (b - 1))


def infonce(scores: torch.Tensor) -> torch.Tensor:
    """InfoNCE = mean_i [f_ii - logsumexp_j f_ij] + log b, in nats; always <= log b."""
    b = _check(scores)
    return (scores.diagonal() - torch.logsumexp(scores, dim=1)).mean() + math.log(b)


def nwj(scores: torch.Tensor) -> torch.Tensor:
    """NWJ = mean_i f_ii - e^-1 mean_{i!=j} exp f_ij, in nats (tight at f = 1 + log p/(pq))."""
    _check(scores)
    return scores.diagonal().mean() - torch.exp(logmeanexp_offdiag(scores) - 1.0)


def dv(scores: torch.Tensor) -> torch.Tensor:
    """Donsker-Varadhan = mean_i f_ii - log mean_{i!=j} exp f_ij, in nats."""
    _check(scores)
    return scores.diagonal().mean() - logmeanexp_offdiag(scores)


def js_fgan(scores: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon f-GAN objective  E_p[-softplus(-f)] - E_q[softplus(f)]  (its gradient
    trains SMILE's critic; not a bound on I)."""
    b = _check(scores)
    diag = scores.diagonal()
    off = F.softplus(scores).sum() - F.softplus(diag).sum()
    return -F.softplus(-diag).mean() - off / (b * (b - 1))


def smile(scores: torch.Tensor, tau: float = 5.0) -> torch.Tensor:
    """SMILE value: mean_i f_ii - log mean_{i!=j} exp clip(f_ij, -tau, tau), in nats.

    Song & Ermon 2020 (ICLR), eq. 17: E_P[f] - log E_Q[clip(e^f, e^-tau, e^tau)], the DV
    bound with the exponentiated critic clipped in the partition term only (clipping e^f
    to [e^-tau, e^tau] is exp of f clipped to [-tau, tau]); the critic is trained with the
    Jensen-Shannon objective (``js_fgan``), as in their code (ermongroup/smile-mi-estimator,
    ``smile_lower_bound``). The positive term is not clipped, so a critic whose positive
    scores run away gives a runaway value: ``neural.py`` refuses those. ``tau=None`` or
    ``inf`` gives the DV bound."""
    _check(scores)
    clipped = scores if tau is None or math.isinf(tau) else scores.clamp(-tau, tau)
    return scores.diagonal().mean() - logmeanexp_offdiag(clipped)


def mine(scores: torch.Tensor, ema: torch.Tensor | None = None,
         momentum: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """MINE: the DV value with the bias-corrected gradient of Belghazi et al. 2018, §3.2.

    grad = E_p[grad f] - E_q[e^f grad f] / m_t, where m_t = momentum * m_{t-1} +
    (1 - momentum) * mean_{i!=j} e^{f_ij} is a moving average (the current batch included;
    m_0 = the first batch's mean). Returns (value with that gradient, new m_t (detached)).
    """
    _check(scores)
    batch_mean_exp = torch.exp(logmeanexp_offdiag(scores))
    with torch.no_grad():
        ema_new = batch_mean_exp.detach() if ema is None else (
            momentum * ema + (1.0 - momentum) * batch_mean_exp.detach())
    value = dv(scores)
    surrogate = scores.diagonal().mean() - batch_mean_exp / ema_new
    return value.detach() + (surrogate - surrogate.detach()), ema_new


# ---------------------------------------------------------------- registry
@dataclass(frozen=True)
class Bound:
    """A bound as ``neural.py`` uses it.

    value(scores, **opts) -> 0-dim tensor: the estimate reported on held-out batches.
    train(scores, state, **opts) -> (0-dim tensor, state): the value carrying the gradient the
    critic is trained with (state: MINE's moving average; None for the others).
    """

    name: str
    value: Callable[..., torch.Tensor]
    train: Callable[..., tuple[torch.Tensor, object]]
    options: tuple[str, ...] = ()
    reference: str = ""


def _stateless(fn):
    return lambda scores, state, **opts: (fn(scores, **opts), state)


def _smile_train(scores: torch.Tensor, state, *, tau: float = 5.0):
    js = js_fgan(scores)
    return smile(scores, tau).detach() + (js - js.detach()), state


def _mine_train(scores: torch.Tensor, state, *, momentum: float = 0.9):
    return mine(scores, state, momentum)


BOUNDS: dict[str, Bound] = {
    "infonce": Bound("infonce", infonce, _stateless(infonce),
                     reference="van den Oord et al. 2018; Poole et al. 2019 eq. 12"),
    "nwj": Bound("nwj", nwj, _stateless(nwj),
                 reference="Nguyen, Wainwright, Jordan 2010; Poole et al. 2019 eq. 6"),
    "mine": Bound("mine", lambda s, momentum=0.9: dv(s), _mine_train, ("momentum",),
                  reference="Belghazi et al. 2018 (DV bound, moving-average gradient)"),
    "smile": Bound("smile", smile, _smile_train, ("tau",),
                   reference="Song & Ermon 2020, eq. 17"),
}


def infonce_ceiling(batch_size: int) -> float:
    """InfoNCE can never exceed log(batch size) nats, whatever the true MI."""
    return math.log(batch_size)
