"""The kernels' exp: within 1 ulp of the C library's, over the whole range."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from distill_agents.numerics import exp


@njit
def fast(x, out):
    for i in range(x.shape[0]):
        out[i] = exp(x[i])


def test_exp_is_within_one_ulp_of_math_exp():
    rng = np.random.default_rng(0)
    x = np.concatenate([
        np.linspace(-708.0, 709.0, 400_001), rng.uniform(-40.0, 0.0, 200_000),
        rng.normal(scale=1e-3, size=10_000), [0.0, -0.0, 1e-300, -1e-300, 1.0, -1.0],
    ])  # fmt: skip
    out = np.empty_like(x)
    fast(x, out)
    ref = np.array([math.exp(v) for v in x])
    ulps = np.abs(out - ref) / np.spacing(ref)
    assert ulps.max() <= 1.0
    assert (ulps == 0.0).mean() > 0.9  # mostly the correctly rounded value itself
    assert out[x == 0.0].tolist() == [1.0, 1.0]


def test_exp_underflows_like_math_exp_and_keeps_nan():
    x = np.array([-708.5, -720.0, -744.0, -745.1, -746.0, -800.0, -np.inf, np.nan])
    out = np.empty_like(x)
    fast(x, out)
    ref = np.array([math.exp(v) for v in x[:-1]])
    # Subnormal results to within one subnormal step; 0 below the smallest one.
    np.testing.assert_allclose(out[:-1], ref, rtol=0.0, atol=5e-324)
    assert out[-4:-1].tolist() == [0.0, 0.0, 0.0] and math.isnan(out[-1])
