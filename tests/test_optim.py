"""Tests for minivl.optim: update rules by hand and against torch.optim, groups, schedules,
clipping, and optimizer checkpoints through minivl.io."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minivl import io
from minivl.nn import Parameter
from minivl.optim import (
    SGD,
    Adam,
    AdamW,
    WarmupCosineLR,
    clip_grad_norm,
    flatten_state_dict,
    unflatten_state_dict,
    warmup_cosine,
)

SHAPES = [(3, 4), (5,), ()]  # a matrix, a bias, a scalar (like CLIP's logit_scale)


def make_params(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [Parameter(np.asarray(rng.standard_normal(s), dtype=dtype)) for s in SHAPES]


def loss_grad(x):
    """Gradient of sum(x**4 / 4 - x): depends on x, so errors in one step compound."""
    return np.asarray(x**3 - 1.0)  # an array even for 0-d x, as backward gives


def set_grads(params):
    for p in params:
        p.grad = loss_grad(p.data)


def run(opt, params, steps):
    for _ in range(steps):
        set_grads(params)
        opt.step()


# --------------------------------------------------------------------------- by hand


def test_sgd_plain_step_is_minus_lr_times_grad():
    params = make_params()
    before = [p.data.copy() for p in params]
    run(SGD(params, lr=0.1), params, 1)
    for p, x in zip(params, before):
        np.testing.assert_allclose(p.data, x - 0.1 * loss_grad(x), rtol=1e-15)


@pytest.mark.parametrize(
    "nesterov, expected",
    [
        # constant grad 1, lr 0.1, momentum 0.9:
        # plain:    b = 1 -> p = 0.9;           b = 1.9 -> p = 0.9 - 0.19 = 0.71
        # nesterov: b = 1, step 1.9 -> p = 0.81; b = 1.9, step 1 + 1.71 -> p = 0.81 - 0.271
        (False, [0.9, 0.71]),
        (True, [0.81, 0.539]),
    ],
)
def test_sgd_momentum_by_hand(nesterov, expected):
    p = Parameter(np.array([1.0]))
    opt = SGD([p], lr=0.1, momentum=0.9, nesterov=nesterov)
    for want in expected:
        p.grad = np.array([1.0])
        opt.step()
        np.testing.assert_allclose(p.data, [want], rtol=1e-14)


def test_sgd_weight_decay_is_an_l2_gradient():
    # lr 0.5, wd 0.1, p = 2, grad 1: g = 1 + 0.2 = 1.2 -> p = 2 - 0.6
    p = Parameter(np.array([2.0]))
    p.grad = np.array([1.0])
    SGD([p], lr=0.5, weight_decay=0.1).step()
    np.testing.assert_allclose(p.data, [1.4], rtol=1e-15)


@pytest.mark.parametrize("cls", [Adam, AdamW])
def test_adam_constant_gradient_moves_lr_per_step(cls):
    # With a constant g the bias-corrected moments are exactly g and g**2 at every
    # step, so each step is lr * g / (|g| + eps): about lr * sign(g).
    g = np.array([3.0, -0.5, 1e-3, -200.0])
    p = Parameter(np.zeros(4))
    opt = cls([p], lr=0.01, eps=1e-8, weight_decay=0.0)
    for k in range(1, 6):
        p.grad = g.copy()
        opt.step()
        np.testing.assert_allclose(p.data, -k * 0.01 * g / (np.abs(g) + 1e-8), rtol=1e-12)


def test_adam_matches_the_paper_formulas():
    params = make_params(1)
    lr, (b1, b2), eps = 0.05, (0.8, 0.95), 1e-6
    opt = Adam(params, lr=lr, betas=(b1, b2), eps=eps)
    x = [p.data.copy() for p in params]
    m = [np.zeros_like(a) for a in x]
    v = [np.zeros_like(a) for a in x]
    for t in range(1, 4):
        set_grads(params)
        opt.step()
        for i in range(len(x)):
            g = loss_grad(x[i])
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g**2
            x[i] = x[i] - lr * (m[i] / (1 - b1**t)) / (np.sqrt(v[i] / (1 - b2**t)) + eps)
            np.testing.assert_allclose(params[i].data, x[i], rtol=1e-12, atol=1e-14)


def test_adam_weight_decay_equals_adding_it_to_the_gradient():
    a, b = make_params(2), make_params(2)
    opt_a = Adam(a, lr=0.01, weight_decay=0.3)
    opt_b = Adam(b, lr=0.01)
    for _ in range(4):
        for p, q in zip(a, b):
            p.grad = loss_grad(p.data)
            q.grad = loss_grad(q.data) + 0.3 * q.data
        opt_a.step()
        opt_b.step()
    for p, q in zip(a, b):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-14)


def test_adamw_decay_is_decoupled_from_the_gradient():
    # With a zero gradient Adam's step is 0 / (0 + eps) = 0: only the decay acts.
    p = Parameter(np.array([1.0, -4.0]))
    opt = AdamW([p], lr=0.1, weight_decay=0.5)
    for k in range(1, 4):
        p.grad = np.zeros(2)
        opt.step()
        np.testing.assert_allclose(p.data, np.array([1.0, -4.0]) * (1 - 0.05) ** k, rtol=1e-14)


# --------------------------------------------------------------------------- torch.optim


def torch_twin(params):
    torch = pytest.importorskip("torch")
    return [torch.tensor(p.data.copy(), requires_grad=True) for p in params]


OPTIMIZERS = {
    "sgd": (SGD, "SGD", dict(lr=0.05)),
    "sgd-momentum-wd": (SGD, "SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    "sgd-nesterov": (SGD, "SGD", dict(lr=0.05, momentum=0.8, nesterov=True)),
    "adam": (Adam, "Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6)),
    "adam-wd": (Adam, "Adam", dict(lr=0.02, weight_decay=0.1)),
    "adamw": (AdamW, "AdamW", dict(lr=0.02, weight_decay=0.1)),
}


@pytest.mark.oracle
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_matches_torch_optim_with_two_groups(name, dtype, rtol):
    torch = pytest.importorskip("torch")
    cls, torch_name, kwargs = OPTIMIZERS[name]
    ours = make_params(3, dtype)
    theirs = torch_twin(ours)
    # The second group overrides the learning rate; the first inherits the defaults.
    opt = cls([{"params": ours[:2]}, {"params": ours[2:], "lr": 0.3}], **kwargs)
    ref = getattr(torch.optim, torch_name)(
        [{"params": theirs[:2]}, {"params": theirs[2:], "lr": 0.3}], **kwargs
    )
    for _ in range(5):
        set_grads(ours)
        for t in theirs:
            t.grad = torch.from_numpy(loss_grad(t.detach().numpy()))
        opt.step()
        ref.step()
        for p, t in zip(ours, theirs):
            assert p.data.dtype == dtype
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=rtol, atol=rtol)


# --------------------------------------------------------------------------- groups, frozen, in place


def test_groups_use_their_own_lr_and_the_defaults_otherwise():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(2))
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.01}], lr=0.1, weight_decay=0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.5, 0.5]
    a.grad, b.grad = np.ones(2), np.ones(2)
    opt.step()
    np.testing.assert_allclose(a.data, 1 - 0.1 * 1.5)
    np.testing.assert_allclose(b.data, 1 - 0.01 * 1.5)


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_frozen_and_gradless_params_are_untouched(cls):
    frozen, gradless, live = make_params(4)
    frozen.requires_grad = False
    frozen.grad = np.ones_like(frozen.data)  # even with a stale gradient
    before = frozen.data.copy(), gradless.data.copy(), live.data.copy()
    opt = cls([frozen, gradless, live], lr=0.1, weight_decay=0.1)
    live.grad = loss_grad(live.data)
    opt.step()
    np.testing.assert_array_equal(frozen.data, before[0])
    np.testing.assert_array_equal(gradless.data, before[1])
    assert not np.array_equal(live.data, before[2])
    assert set(opt.state_dict()["state"]) <= {2}  # state only for the live one


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_updates_in_place_so_views_stay_shared(cls):
    base = np.linspace(-1, 1, 12).reshape(3, 4)
    p = Parameter(base)
    view = base[1]  # e.g. a tied weight or a slice someone kept
    opt = cls([p], lr=0.1)
    p.grad = np.ones_like(base)
    opt.step()
    assert p.data is base
    np.testing.assert_array_equal(view, p.data[1])
    assert not np.array_equal(view, np.linspace(-1, 1, 12).reshape(3, 4)[1])


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_float32_stays_float32(cls):
    params = make_params(5, np.float32)
    opt = cls(params, lr=0.1, weight_decay=0.01)
    for p in params:
        p.grad = loss_grad(p.data.astype(np.float64))  # a float64 gradient
    opt.step()
    assert all(p.data.dtype == np.float32 for p in params)


def test_zero_grad_forgets_every_gradient():
    params = make_params()
    set_grads(params)
    SGD(params, lr=0.1).zero_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize(
    "make, err, match",
    [
        (lambda p: SGD([], lr=0.1), ValueError, "empty"),
        (lambda p: SGD(p[0], lr=0.1), TypeError, "one parameter"),
        (lambda p: SGD([p[0], p[0]], lr=0.1), ValueError, "more than once"),
        (
            lambda p: SGD([{"params": [p[0]]}, {"params": [p[0]]}], lr=0.1),
            ValueError,
            "more than once",
        ),
        (lambda p: SGD([p[0], np.ones(2)], lr=0.1), TypeError, "ndarray"),
        (lambda p: SGD(p, lr=-1.0), ValueError, "lr"),
        (lambda p: SGD(p, lr=0.1, nesterov=True), ValueError, "nesterov"),
        (lambda p: SGD([{"params": p, "momentum": -0.5}], lr=0.1), ValueError, "momentum"),
        (lambda p: Adam(p, betas=(0.9, 1.0)), ValueError, "betas"),
        (lambda p: Adam(p, betas=(0.9,)), ValueError, "betas"),
        (lambda p: AdamW(p, eps=-1e-8), ValueError, "eps"),
        (lambda p: AdamW(p, lr=float("nan")), ValueError, "lr"),
    ],
)
def test_bad_arguments_are_refused(make, err, match):
    with pytest.raises(err, match=match):
        make(make_params())


# --------------------------------------------------------------------------- schedules


def test_warmup_cosine_landmarks():
    kw = dict(total_steps=110, warmup_steps=10, base_lr=1.0, min_lr=0.1)
    assert warmup_cosine(0, **kw) == 0.0
    assert warmup_cosine(5, **kw) == pytest.approx(0.5)  # half way up
    assert warmup_cosine(10, **kw) == pytest.approx(1.0)  # end of warm-up
    assert warmup_cosine(60, **kw) == pytest.approx(0.55)  # cosine midpoint: mean of the ends
    assert warmup_cosine(110, **kw) == pytest.approx(0.1)
    assert warmup_cosine(500, **kw) == pytest.approx(0.1)
    assert warmup_cosine(0, 10, 0, 3.0) == pytest.approx(3.0)  # no warm-up: start at the top


@settings(deadline=None, max_examples=50)
@given(
    total=st.integers(1, 300),
    warmup_frac=st.floats(0, 1),
    base=st.floats(1e-6, 10),
    min_frac=st.floats(0, 1),
)
def test_warmup_cosine_rises_then_falls_within_bounds(total, warmup_frac, base, min_frac):
    warmup, low = int(warmup_frac * total), min_frac * base
    lrs = np.array([warmup_cosine(s, total, warmup, base, low) for s in range(total + 2)])
    assert np.all(np.diff(lrs[:warmup]) > 0)  # the ramp
    if warmup < total:  # the top, then down
        assert lrs[warmup] == pytest.approx(base) and lrs.max() <= base * (1 + 1e-12)
        assert np.all(np.diff(lrs[warmup:]) <= 1e-12 * base)
    assert lrs[warmup:].min() >= low * (1 - 1e-12) and lrs[-1] == low


@pytest.mark.oracle
def test_warmup_cosine_matches_transformers():
    torch = pytest.importorskip("torch")
    optimization = pytest.importorskip("transformers.optimization")
    total, warmup, base, low = 50, 7, 0.3, 0.03
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    sched = optimization.get_cosine_with_min_lr_schedule_with_warmup(
        opt, num_warmup_steps=warmup, num_training_steps=total, min_lr=low
    )
    for step in range(total + 1):
        assert warmup_cosine(step, total, warmup, base, low) == pytest.approx(
            opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15
        )
        opt.step()
        sched.step()


def test_scheduler_keeps_each_groups_base_lr():
    a, b = Parameter(np.zeros(1)), Parameter(np.zeros(1))
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.1}], lr=1.0)
    sched = WarmupCosineLR(opt, total_steps=20, warmup_steps=4, min_lr=[0.0, 0.01])
    for step in range(25):
        lrs = [g["lr"] for g in opt.param_groups]
        assert lrs == [warmup_cosine(step, 20, 4, 1.0), warmup_cosine(step, 20, 4, 0.1, 0.01)]
        a.grad = b.grad = np.ones(1)
        before = a.data.copy()
        opt.step()  # the optimizer really uses the scheduled rate
        np.testing.assert_allclose(before - a.data, lrs[0])
        sched.step()


def test_scheduler_rejects_mismatched_min_lrs():
    opt = SGD(make_params(), lr=1.0)
    with pytest.raises(ValueError, match="min_lr"):
        WarmupCosineLR(opt, total_steps=10, min_lr=[0.0, 0.1])
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosineLR(opt, total_steps=10, warmup_steps=11)


# --------------------------------------------------------------------------- clipping


@settings(deadline=None, max_examples=30)
@given(
    grads=st.lists(
        hnp.arrays(
            np.float64,
            hnp.array_shapes(min_dims=0, max_dims=2, max_side=5),
            elements=st.floats(-1e3, 1e3),
        ),
        min_size=1,
        max_size=4,
    ),
    max_norm=st.floats(0.01, 100),
)
def test_clip_grad_norm_against_the_formula(grads, max_norm):
    params = [Parameter(np.zeros(g.shape)) for g in grads] + [Parameter(np.zeros(3))]
    for p, g in zip(params, grads):
        p.grad = g.copy()  # the last parameter has no gradient and must be ignored
    total = np.sqrt(sum(np.sum(g**2) for g in grads))
    returned = clip_grad_norm(params, max_norm)
    assert returned == pytest.approx(total, rel=1e-12)
    scale = min(1.0, max_norm / (total + 1e-6))
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad, g * scale, rtol=1e-12, atol=1e-300)
    after = np.sqrt(sum(np.sum(p.grad**2) for p in params[:-1]))
    assert after <= max_norm * (1 + 1e-9)
    assert params[-1].grad is None


def test_clip_grad_norm_handles_read_only_gradients():
    p = Parameter(np.zeros(4))
    p.grad = np.broadcast_to(np.array(2.0), (4,))  # read-only, as broadcast backward can give
    assert clip_grad_norm([p], 1.0) == pytest.approx(4.0)
    np.testing.assert_allclose(p.grad, 0.5, rtol=1e-6)


@pytest.mark.oracle
def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    grads = [np.asarray(rng.standard_normal(s) * 3) for s in SHAPES]
    ours = [Parameter(np.zeros(s)) for s in SHAPES]
    theirs = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    for p, t, g in zip(ours, theirs, grads):
        p.grad, t.grad = g.copy(), torch.from_numpy(g.copy())
    total = clip_grad_norm(ours, 1.5)
    assert total == pytest.approx(torch.nn.utils.clip_grad_norm_(theirs, 1.5).item(), rel=1e-12)
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12)


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
        (Adam, dict(lr=0.02)),
        (AdamW, dict(lr=0.02)),
    ],
)
def test_checkpoint_resumes_bit_for_bit(tmp_path, cls, kwargs, fmt):
    def build(params):
        opt = cls(
            [{"params": params[:2]}, {"params": params[2:], "lr": 0.1, "weight_decay": 0.0}],
            **kwargs,
        )
        return opt, WarmupCosineLR(opt, total_steps=8, warmup_steps=2)

    params = make_params(7, np.float32)
    opt, sched = build(params)
    for _ in range(3):
        run(opt, params, 1)
        sched.step()
    io.save({f"p{i}": p for i, p in enumerate(params)}, tmp_path / f"model.{fmt}")
    io.save(flatten_state_dict(opt.state_dict()), tmp_path / f"opt.{fmt}")
    step = sched.state_dict()

    # A fresh process: new parameters of the same shapes, then load everything.
    weights = io.load(tmp_path / f"model.{fmt}")
    resumed = [Parameter(weights[f"p{i}"]) for i in range(len(params))]
    opt2, sched2 = build(resumed)
    opt2.load_state_dict(unflatten_state_dict(io.load(tmp_path / f"opt.{fmt}")))
    sched2.load_state_dict(step)

    for _ in range(3):
        run(opt, params, 1)
        sched.step()
        run(opt2, resumed, 1)
        sched2.step()
    for p, q in zip(params, resumed):
        assert p.data.dtype == q.data.dtype == np.float32
        assert p.data.tobytes() == q.data.tobytes()


def test_state_dict_is_a_snapshot_and_flattens_to_plain_arrays():
    params = make_params()
    opt = Adam(params, lr=0.1, betas=(0.8, 0.9))
    run(opt, params, 2)
    sd = opt.state_dict()
    saved = sd["state"][0]["exp_avg"].copy()
    run(opt, params, 1)
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], saved)

    flat = flatten_state_dict(sd)
    assert all(isinstance(v, np.ndarray) for v in flat.values())
    assert flat["state.0.step"].shape == () and int(flat["state.0.step"]) == 2
    np.testing.assert_array_equal(flat["param_groups.0.betas"], [0.8, 0.9])
    np.testing.assert_array_equal(flat["param_groups.0.params"], [0, 1, 2])
    back = unflatten_state_dict(flat)
    assert back["param_groups"][0]["betas"] == (0.8, 0.9)
    assert back["param_groups"][0]["params"] == [0, 1, 2]


def test_load_state_dict_refuses_a_different_model():
    params = make_params()
    opt = Adam(params, lr=0.1)
    run(opt, params, 1)
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="parameters"):
        Adam(params[:2], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="groups"):
        Adam([{"params": params[:1]}, {"params": params[1:]}], lr=0.1).load_state_dict(sd)
    other = [Parameter(np.zeros((4, 3))), *make_params()[1:]]
    fresh = Adam(other, lr=0.5)
    with pytest.raises(ValueError, match="shape"):
        fresh.load_state_dict(sd)
    assert fresh.state == {} and fresh.param_groups[0]["lr"] == 0.5  # nothing half-loaded


def test_unflatten_refuses_foreign_names():
    with pytest.raises(ValueError, match="not an optimizer state name"):
        unflatten_state_dict({"model.weight": np.zeros(2)})
