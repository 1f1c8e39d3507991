"""DALL-E exercises: Gumbel-softmax sampling (lecture S25) and the dVAE's KL to a uniform prior (S23).

Jang et al. (2017) and Maddison et al. (2017): adding Gumbel noise
g = -log(-log u) to the logits and taking the argmax samples the categorical
softmax(logits) exactly; softmax((logits + g) / tau) relaxes that sample to
the simplex. DALL-E (Ramesh et al. 2021, section 2.1) trains its dVAE with
this relaxation and a KL term to a uniform prior over the 8192 codes, the
prior before stage 2 learns one. minivl's sampler is
``minivl/functional/softmax.py::gumbel_softmax``; both references are also
written here in NumPy (no autograd needed).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from minivl.exercises.check import Exercise, Mistake
from minivl.exercises.draw import DTYPES, SCALES, SEEDS, array, sizes
from minivl.kernels import reference as R

# --------------------------------------------------------------------------- Gumbel-softmax

GUMBEL_STUB = '''
def gumbel_softmax(logits, tau, hard, rng):
    """One Gumbel-softmax sample per row of logits (N, K), drawn with the NumPy Generator rng.

        g = -log(-log(u)),  u ~ Uniform(0, 1) independently for every entry
        y = softmax((logits + g) / tau)   over the last axis        (the relaxed sample)

    With hard=True return the one-hot vector of argmax(y) instead (the value
    DALL-E's straight-through estimator uses in the forward pass).
    Returns (N, K) in the dtype of logits.
    """
    raise NotImplementedError("gumbel_softmax")
'''

LOGITS = np.array([1.0, 0.0, -1.0, 0.5, 2.0])
Z = 5.0  # rates within 5 standard errors: a correct sampler fails a check with probability below 1e-5


def _gumbel_softmax(logits, tau, hard, rng, noise="gumbel", use_tau=True):
    u = rng.random(logits.shape)
    g = {"gumbel": -np.log(-np.log(u + 1e-20) + 1e-20), "uniform": u, "none": 0.0 * u,
         "exponential": -np.log(u + 1e-20)}[noise]
    y = R.softmax_forward(((logits + g) / (tau if use_tau else 1.0)).astype(logits.dtype))
    if hard:
        return (np.arange(logits.shape[-1]) == y.argmax(-1)[:, None]).astype(logits.dtype)
    return y


def _gumbel_loop(logits, tau, hard, rng):
    out = np.zeros_like(logits)
    for n, row in enumerate(logits):
        z = np.array([(x - math.log(-math.log(rng.random() or 1e-300))) / tau for x in row])
        if hard:
            out[n, z.argmax()] = 1
        else:
            e = np.exp(z - z.max())
            out[n] = e / e.sum()
    return out


HINT_NOISE = "the noise is g = -log(-log(u)) with u uniform: other noise samples other probabilities"
HINT_TAU = "divide (logits + g) by tau before the softmax: tau sets how close to one-hot the samples are"
HINT_HARD = "with hard=True return one-hot rows: 1 at argmax(y), 0 elsewhere"


def _gumbel_statistics(student):
    findings, m = [], 4000
    probs = np.exp(LOGITS - LOGITS.max())
    probs /= probs.sum()
    for hard, tau, seed in ((True, 1.0, 1), (False, 0.5, 2)):
        logits = np.tile(LOGITS, (m, 1))
        y = student(logits.copy(), tau, hard, np.random.default_rng(seed))
        if not isinstance(y, np.ndarray) or y.shape != logits.shape or y.dtype != logits.dtype:
            got = f"{type(y).__name__} {getattr(y, 'shape', '')} {getattr(y, 'dtype', '')}"
            return [(f"expected a float64 array {logits.shape}, got {got}", "return an array shaped like logits")], ""
        if np.isnan(y).any():
            return [("the samples contain NaN", "keep u away from 0 and 1, or use rng.gumbel")], ""
        if hard and not (np.isin(y, (0, 1)).all() and (y.sum(1) == 1).all()):
            findings.append(("hard=True returned rows that are not one-hot", HINT_HARD))
        if not hard and not (np.all(y >= 0) and np.allclose(y.sum(1), 1)):
            findings.append(("relaxed samples are not on the simplex (nonnegative, rows summing to 1)",
                             "the relaxed sample is a softmax"))
        counts = np.bincount(y.argmax(1), minlength=len(LOGITS))
        se = np.sqrt(probs * (1 - probs) / m)
        worst = np.max(np.abs(counts / m - probs) / se)
        if worst > Z:
            findings.append((f"{'hard' if hard else 'relaxed'} samples: argmax frequencies {np.round(counts / m, 3)} "
                             f"differ from softmax(logits) {np.round(probs, 3)} by {worst:.1f} standard errors",
                             HINT_NOISE))
        if not hard:  # the temperature shows in how peaked the relaxed samples are
            ref = _gumbel_softmax(np.tile(LOGITS, (20000, 1)), tau, False, np.random.default_rng(99))
            mean, ref_mean = y.max(1).mean(), ref.max(1).mean()
            se = math.sqrt(y.max(1).var() / m + ref.max(1).var() / 20000)
            if abs(mean - ref_mean) > Z * se:
                findings.append((f"relaxed samples at tau={tau}: mean largest entry {mean:.3f}, expected "
                                 f"{ref_mean:.3f} +- {Z * se:.3f}", HINT_TAU))
    verified = (f"{m} hard samples (tau=1) and {m} relaxed samples (tau=0.5) of logits {LOGITS.tolist()}: "
                f"argmax frequencies match softmax(logits) within {Z:g} standard errors, hard rows are one-hot, "
                "relaxed rows lie on the simplex with the peakedness tau=0.5 gives (fixed seeds).")
    return findings, verified


GUMBEL_SOFTMAX = Exercise(
    name="gumbel_softmax", slide="S25", part="ex3_dalle", title="Gumbel-softmax, relaxed and hard",
    stub=GUMBEL_STUB, reference=_gumbel_softmax,
    solution="minivl/functional/softmax.py::gumbel_softmax",
    statistical=_gumbel_statistics,
    mistakes=[
        Mistake("uniform noise", HINT_NOISE, lambda *a: _gumbel_softmax(*a, noise="uniform")),
        Mistake("one log only", HINT_NOISE, lambda *a: _gumbel_softmax(*a, noise="exponential")),
        Mistake("tau ignored", HINT_TAU, lambda *a: _gumbel_softmax(*a, use_tau=False)),
        Mistake("hard returns the soft sample", HINT_HARD, lambda l, t, h, r: _gumbel_softmax(l, t, False, r)),
    ],
)
GUMBEL_SOFTMAX.alternative = _gumbel_loop

# --------------------------------------------------------------------------- KL to the uniform prior

DVAE_KL_STUB = '''
def dvae_kl(logits):
    """The dVAE's KL term: KL(q || uniform) summed over the grid, for each image.

    logits: (B, N, K), the encoder's logits over K codes at each of N grid positions.
    q = softmax(logits) over the codes; the prior is uniform, p = 1/K. Then

        KL(q || p) at one position = sum_k q_k * (log q_k - log(1/K)) = sum_k q_k log q_k + log K

    Returns (B,): the KL summed over the N positions, in the dtype of logits.
    The logits can be large (1e3): compute log q with a stable log-softmax.
    """
    raise NotImplementedError("dvae_kl")
'''


def _dvae_kl(logits, reverse=False, with_log_k=True, reduce="sum", stable=True):
    K = logits.shape[-1]
    log_q = R.log_softmax_forward(logits) if stable else np.log(R.softmax_forward(logits))
    q = np.exp(log_q)
    log_k = logits.dtype.type(math.log(K))
    if reverse:  # KL(p || q)
        kl = np.sum((1.0 / K) * (-log_k - log_q), axis=-1)
    else:
        kl = np.sum(q * log_q, axis=-1) + (log_k if with_log_k else 0)
    return (kl.sum(-1) if reduce == "sum" else kl.mean(-1)).astype(logits.dtype)


def _dvae_kl_loop(logits):
    B, N, K = logits.shape
    out = np.zeros(B, logits.dtype)
    for b in range(B):
        for n in range(N):
            row = logits[b, n].astype(np.float64)
            lse = row.max() + math.log(np.exp(row - row.max()).sum())
            out[b] += sum(math.exp(x - lse) * (x - lse + math.log(K)) for x in row)
    return out


@st.composite
def _kl_inputs(draw):
    shape = (draw(sizes(1, 3)), draw(sizes(1, 4)), draw(sizes(2, 6)))
    return {"logits": array(shape, draw(DTYPES), draw(SCALES), draw(SEEDS))}


DVAE_KL = Exercise(
    name="dvae_kl", slide="S23", part="ex3_dalle", title="the dVAE's KL to a uniform prior",
    stub=DVAE_KL_STUB, reference=_dvae_kl,
    solution="minivl/exercises/dalle.py::_dvae_kl (minivl's dVAE model is not written yet)",
    inputs=_kl_inputs(),
    scale=lambda logits: logits.shape[1] * math.log(logits.shape[2]),
    mistakes=[
        Mistake("KL reversed", "the ELBO's term is KL(q || p), the expectation under q: sum_k q_k log(q_k / p_k).",
                lambda x: _dvae_kl(x, reverse=True)),
        Mistake("log K forgotten", "log(1/K) is part of the KL: without + log K you get the negative entropy, "
                "not a KL (a KL is never negative).", lambda x: _dvae_kl(x, with_log_k=False)),
        Mistake("log of the softmax", "log(softmax) underflows to log 0 = -inf for large logits: use the "
                "log-softmax x - max - log(sum(exp(x - max))).", lambda x: _dvae_kl(x, stable=False)),
        Mistake("mean over the grid", "sum the KL over the N grid positions, do not average it.",
                lambda x: _dvae_kl(x, reduce="mean")),
    ],
)
DVAE_KL.alternative = _dvae_kl_loop

EXERCISES = [GUMBEL_SOFTMAX, DVAE_KL]
