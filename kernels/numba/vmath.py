"""Vectorisable math for the Numba kernels: ``exp``, ``erfc``, ``row_max``, the jit options.

Numba lowers ``math.exp`` / ``np.exp`` inside a loop to one libm call per
element unless Intel's SVML is installed (it is not here), so LLVM cannot turn
the loop into AVX-512 code and every exp-heavy kernel (softmax, attention,
GELU) runs at scalar speed. ``exp`` below is plain arithmetic that LLVM *can*
vectorise, the classic recipe of Cody & Waite (1980) as used by libm:

    exp(x) = 2**n * exp(r),   n = round(x / ln 2),   r = x - n ln 2,  |r| <= ln2 / 2

``n ln 2`` is subtracted in two pieces (a short ``ln2_hi`` whose product with
``n`` is exact, then the tiny rest ``ln2_lo``), ``exp(r)`` is its Taylor
polynomial (degree 7 for float32, 13 for float64: truncation below half an ulp
on |r| <= 0.347), and ``2**n`` is built straight from the exponent bits. It is
split as ``2**(n//2) * 2**(n - n//2)`` so that both halves stay normal numbers
and the product rounds correctly into overflow (inf).

Underflow is flushed: where exp(x) would be below the smallest normal number
(x < -87.34 in float32, x < -708.40 in float64) the result is exactly 0, as
``exp(-inf)`` must be for masked logits, and the arithmetic never touches a
denormal. Denormal multiplies take a slow microcode path on x86: measured on
the development machine, 6.1 ns per element for inputs whose exp is denormal
or 0 against 0.36 ns for ordinary ones (17x), and every masked (-inf) score of
a causal attention went that way, doubling the causal forward. Results between
0 and 1.2e-38 (float32) are lost; no softmax or GELU here can tell.

Measured against NumPy in float64/long double: max relative error 0.6 ulp for
both dtypes (tests/kernels/test_numba_softmax.py checks it).

``erfc`` (for GELU) follows the shape of the classic Chebyshev-fitted
formula (as in Numerical Recipes' ``erfcc``): for z >= 0,

    erfc(z) = t * exp(-z^2 + g(t)),   t = 1 / (1 + z / 2),

where g is smooth on t in (0, 1]; its coefficients here are our own
least-squares Chebyshev fit of log(erfcx(z) / t) on z in [0, 12] (SciPy's
erfcx as the truth), degree 10, max error 5e-8. z^2 is split as zh^2 + rest
with zh holding 12 significant bits, so zh^2 is exact and the large exponent
loses nothing to rounding. Max error 6 ulp (4e-7 relative), checked against
SciPy in tests/kernels/test_numba_gelu.py. Float32 only: float64 calls libm.
"""

from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload

# LLVM fast-math flags for the kernels: contract (fused multiply-add),
# reassoc (lets LLVM split sums over several vector accumulators), arcp
# (x / y -> x * (1 / y)) and nsz (ignore the sign of zero). Deliberately NOT
# 'nnan' / 'ninf': masked logits are -inf and must stay exactly that.
FASTMATH = {"contract", "reassoc", "arcp", "nsz"}

# The options of every kernel. error_model="numpy": x / 0 gives inf or nan, as
# in NumPy, instead of Python's ZeroDivisionError -- whose check on every
# division would also keep LLVM from vectorising the loop.
JIT_OPTIONS = {"cache": True, "fastmath": FASTMATH, "error_model": "numpy"}


def _make_exp(ftype, itype, exponent_bias, mantissa_bits, lo, hi, ln2_hi, ln2_lo, degree):
    """Build exp for one float type, every constant already of that type.

    Constants of the wrong type would silently promote float32 math to
    float64 and halve the vector width, hence the factory.
    """
    f = ftype
    log2e, half, zero = f(1.0 / math.log(2.0)), f(0.5), f(0.0)
    lo, hi, ln2_hi, ln2_lo = f(lo), f(hi), f(ln2_hi), f(ln2_lo)
    # Taylor coefficients of exp(r), highest degree first (Horner's order)
    coeffs = tuple(f(1.0 / math.factorial(i)) for i in range(degree, -1, -1))
    bias, shift = itype(exponent_bias), itype(mantissa_bits)

    def exp_impl(x):
        # below lo the result would be denormal: flush it to 0 (and -inf with it);
        # above hi it is inf; the clamps keep n small enough for the bit trick and
        # every intermediate a normal number
        flush = x < lo
        x = lo if x < lo else x
        x = hi if x > hi else x
        n = np.floor(x * log2e + half)  # nearest integer to x / ln 2
        r = x - n * ln2_hi - n * ln2_lo  # |r| <= ln2 / 2, no cancellation error
        p = coeffs[0]
        for c in coeffs[1:]:  # a constant trip count: LLVM unrolls it
            p = p * r + c
        k = itype(n)
        k1 = k >> 1  # 2**n = 2**k1 * 2**(n - k1): both halves are normal numbers
        s1 = itype((k1 + bias) << shift).view(ftype)
        s2 = itype((k - k1 + bias) << shift).view(ftype)
        r = p * s1 * s2
        return zero if flush else r

    return exp_impl


# lo: the float just above log(smallest normal), so exp(lo) is still normal
_exp_float32 = _make_exp(np.float32, np.int32, 127, 23, -87.33654, 89.0,
                         0.693359375, -2.12194440e-4, degree=7)
_exp_float64 = _make_exp(np.float64, np.int64, 1023, 52, -708.3964185322, 710.0,
                         6.93147180369123816490e-01, 1.90821492927058770002e-10, degree=13)


def exp(x):
    """exp(x) for a float32/float64 scalar inside a Numba kernel (vectorisable).

    Called from plain Python it is ``np.exp``; compiled, it is the polynomial
    above, chosen by the argument's type.
    """
    return np.exp(x)


# Only 'contract' inside exp: 'reassoc' could merge the two ln2 pieces and
# undo the Cody-Waite split.
@overload(exp, jit_options={"fastmath": {"contract"}, "error_model": "numpy"})
def _exp_overload(x):
    if x == types.float32:
        return _exp_float32
    if x == types.float64:
        return _exp_float64
    return None


# g(u) for erfc, highest degree first; u maps t in [1/7, 1] onto [-1, 1]
_ERFC_G = (-2.2725849018409224e-05, 7.8694299041751569e-05, 0.00012684864819822721,
           -0.00068444420701401919, -0.00018335464328213583, 0.004311923780967882,
           -0.0017706779135319992, -0.031906180112648869, 0.01932422385085672,
           0.58560205236849561, -0.57487631103767101)
_T_LO = 1.0 / 7.0  # t at z = 12


def _make_erfc32():
    f = np.float32
    coeffs = tuple(f(c) for c in _ERFC_G)
    u_scale, u_shift = f(2.0 / (1.0 - _T_LO)), f(-(1.0 + _T_LO) / (1.0 - _T_LO))
    one, two, half, z_max = f(1.0), f(2.0), f(0.5), f(12.0)
    high_bits = np.int32(-4096)  # keeps sign, exponent and the top 12 significant bits

    def erfc_impl(x):
        z = abs(x)
        z = z_max if z > z_max else z  # erfc(12) = 1e-64: 0 in float32
        t = one / (one + half * z)
        u = t * u_scale + u_shift
        g = coeffs[0]
        for c in coeffs[1:]:
            g = g * u + c
        bits = np.float32(z).view(np.int32)
        bits_high = np.int32(bits & high_bits)
        zh = bits_high.view(np.float32)
        r = t * exp(-zh * zh) * exp((zh - z) * (zh + z) + g)
        return r if x >= 0 else two - r

    return erfc_impl


_erfc_float32 = _make_erfc32()


def erfc(x):
    """erfc(x) = 1 - erf(x) for a float32/float64 scalar inside a Numba kernel.

    float32: the vectorisable fit above (a few ulp); float64: libm's erfc.
    """
    return math.erfc(x)


def _erfc_float64(x):
    return math.erfc(x)


# inline="always": erfc with its two exps is too big for LLVM to inline on its
# own, and a call per element would keep the caller's loop from vectorising.
@overload(erfc, inline="always", jit_options={"fastmath": {"contract"}, "error_model": "numpy"})
def _erfc_overload(x):
    if x == types.float32:
        return _erfc_float32
    if x == types.float64:
        return _erfc_float64
    return None


# --------------------------------------------------------------------------- row max
# LLVM will not vectorise a float max reduction without the 'nnan' flag (and
# a scalar max chain costs ~3 cycles per element, more than exp). But IEEE
# floats compare like their bit patterns read as sign-magnitude integers, so
# flipping the magnitude bits of negative values gives integer keys in the
# same order as the floats (-inf < ... < -0 < +0 < ... < inf < NaN), and an
# integer max *does* vectorise. The same flip turns the key back into a float.


def _make_row_max(ftype, itype):
    flip = itype(np.iinfo(itype).max)  # every bit but the sign

    def row_max_impl(row):
        bits = row.view(itype)
        key = np.iinfo(itype).min
        for j in range(bits.shape[0]):
            b = bits[j]
            key = max(key, b ^ flip if b < 0 else b)
        return itype(key ^ flip if key < 0 else key).view(ftype)

    return row_max_impl


def row_max(row):
    """max(row) of a non-empty contiguous 1-D float32/float64 array, vectorised."""
    return np.max(row, initial=-np.inf)


@overload(row_max, jit_options={"error_model": "numpy"})
def _row_max_overload(row):
    if isinstance(row, types.Array) and row.dtype == types.float32:
        return _make_row_max(np.float32, np.int32)
    if isinstance(row, types.Array) and row.dtype == types.float64:
        return _make_row_max(np.float64, np.int64)
    return None
