"""Linear algebra by loops: products, Gaussian elimination, explicit inverses."""

import numpy as np

from adjointbench.impls.rules import implicit_jacobian, materialised_rule


def matmul_loops(A, B):
    C = np.zeros((A.shape[0], B.shape[1]), dtype=A.dtype)
    for i in range(A.shape[0]):
        for j in range(B.shape[1]):
            for k in range(A.shape[1]):
                C[i, j] += A[i, k] * B[k, j]
    return C


def _matvec_jacobian(A, x):
    # dy_i/dA_ij = x_j, dy/dx = A
    n, m = A.shape
    J_A = np.zeros((n, n, m), dtype=A.dtype)
    for i in range(n):
        for j in range(m):
            J_A[i, i, j] = x[j]
    return J_A, A.copy()


def _matmul_jacobian(A, B):
    # dC_ij/dA_ik = B_kj, dC_ij/dB_kj = A_ik
    n, k = A.shape
    m = B.shape[1]
    J_A = np.zeros((n, m, n, k), dtype=A.dtype)
    J_B = np.zeros((n, m, k, m), dtype=A.dtype)
    for i in range(n):
        for j in range(m):
            for p in range(k):
                J_A[i, j, i, p] = B[p, j]
                J_B[i, j, p, j] = A[i, p]
    return J_A, J_B


def gaussian_solve(A, B):
    """A^-1 B by elimination with partial pivoting; B is a vector or a matrix."""
    M = A.astype(A.dtype, copy=True)
    X = np.array(B, dtype=A.dtype, copy=True).reshape(len(A), -1)
    n = len(A)
    for col in range(n):
        pivot = col + int(np.argmax(np.abs(M[col:, col])))
        M[[col, pivot]], X[[col, pivot]] = M[[pivot, col]], X[[pivot, col]]
        for row in range(col + 1, n):
            factor = M[row, col] / M[col, col]
            M[row, col:] -= factor * M[col, col:]
            X[row] -= factor * X[col]
    for col in range(n - 1, -1, -1):
        X[col] = (X[col] - M[col, col + 1:] @ X[col + 1:]) / M[col, col]
    return X.reshape(np.shape(B))


def _solve_jacobian(A, b):
    # x = A^-1 b solves r = A x - b = 0:  dr/dx = A,  dr_i/dA_kl = delta_ik x_l,  dr/db = -I
    x = gaussian_solve(A, b)
    n = len(b)
    r_A = np.zeros((n, n, n), dtype=A.dtype)
    for i in range(n):
        for l in range(n):
            r_A[i, i, l] = x[l]
    return implicit_jacobian(A, (r_A, -np.eye(n, dtype=A.dtype)), gaussian_solve)


# Hessians of <w, f> over the differentiable inputs flattened row-major, in
# declared order: the (A, A) block first, then the mixed blocks.

def _matvec_hessian(w, A, x):
    # d2<w, A x>/dA_ij dx_l = w_i delta_jl; bilinear, so no other entry
    n, m = A.shape
    H = np.zeros((n * m + m, n * m + m), dtype=A.dtype)
    for i in range(n):
        for j in range(m):
            H[i * m + j, n * m + j] = H[n * m + j, i * m + j] = w[i]
    return H


def _matmul_hessian(W, A, B):
    # d2<W, A B>/dA_ik dB_kj = W_ij; bilinear, so no other entry
    n, k = A.shape
    m = B.shape[1]
    H = np.zeros((n * k + k * m, n * k + k * m), dtype=A.dtype)
    for i in range(n):
        for p in range(k):
            for j in range(m):
                H[i * k + p, n * k + p * m + j] = H[n * k + p * m + j, i * k + p] = W[i, j]
    return H


def _solve_hessian(w, A, b):
    # phi = <w, A^-1 b>, x = A^-1 b, lam = A^-T w, K = A^-1:
    # d2phi/dA_ij dA_kl = K_li lam_k x_j + lam_i K_jk x_l,  d2phi/dA_ij db_k = -lam_i K_jk
    n = len(b)
    K = gaussian_solve(A, np.eye(n, dtype=A.dtype))
    x = gaussian_solve(A, b)
    lam = gaussian_solve(A.T.copy(), w)
    H = np.zeros((n * n + n, n * n + n), dtype=A.dtype)
    for i in range(n):
        for j in range(n):
            for k in range(n):
                for l in range(n):
                    H[i * n + j, k * n + l] = K[l, i] * lam[k] * x[j] + lam[i] * K[j, k] * x[l]
                H[i * n + j, n * n + k] = H[n * n + k, i * n + j] = -lam[i] * K[j, k]
    return H


RULES = {
    "matvec": materialised_rule(lambda A, x: matmul_loops(A, x[:, None])[:, 0], _matvec_jacobian,
                                _matvec_hessian),
    "matmul": materialised_rule(matmul_loops, _matmul_jacobian, _matmul_hessian),
    "linear_solve": materialised_rule(lambda A, b: gaussian_solve(A, b), _solve_jacobian,
                                      _solve_hessian),
}
