"""The l2 loss and the softmax, with their Jacobians filled entry by entry
(the softmax's row by row)."""

import numpy as np

from adjointbench.impls.rules import materialised_rule


def _l2_primal(y, y_ref):
    total = y.dtype.type(0)
    for i in range(y.size):
        total += (y[i] - y_ref[i]) ** 2
    return 0.5 * total


def _l2_jacobian(y, y_ref):
    # dL/dy_i = y_i - y_ref_i
    J = np.zeros(y.shape, dtype=y.dtype)
    for i in range(y.size):
        J[i] = y[i] - y_ref[i]
    return (J,)


def _softmax_primal(x):
    shifted = np.exp(x - np.max(x))
    return shifted / np.sum(shifted)


def _softmax_jacobian(x):
    # ds_i/dx_j = s_i (delta_ij - s_j)
    # Row by row: entry by entry, the 1024^2 Python steps took 0.5 s per call
    s = _softmax_primal(x)
    J = np.zeros((x.size, x.size), dtype=x.dtype)
    for i in range(x.size):
        J[i] = -s[i] * s
        J[i, i] += s[i]
    return (J,)


def _l2_hessian(w, y, y_ref):
    # d2L/dy_i dy_j = delta_ij, times the scalar cotangent
    H = np.zeros((y.size, y.size), dtype=y.dtype)
    for i in range(y.size):
        H[i, i] = w
    return H


def _softmax_hessian(w, x):
    # d2<w, s>/dx_j dx_k = delta_jk s_j (w_j - a) - s_j s_k (w_j + w_k - 2 a),  a = <w, s>
    s = _softmax_primal(x)
    a = w.dtype.type(0)
    for i in range(x.size):
        a += w[i] * s[i]
    H = np.zeros((x.size, x.size), dtype=x.dtype)
    for j in range(x.size):
        for k in range(x.size):
            H[j, k] = (j == k) * s[j] * (w[j] - a) - s[j] * s[k] * (w[j] + w[k] - 2 * a)
    return H


RULES = {
    "l2_loss": materialised_rule(_l2_primal, _l2_jacobian, _l2_hessian),
    "softmax": materialised_rule(_softmax_primal, _softmax_jacobian, _softmax_hessian),
}
