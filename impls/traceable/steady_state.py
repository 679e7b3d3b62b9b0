"""The steady-state sensitivity problems for AD frameworks (see impls/traceable).

``LOSSES[problem](xp, theta, **data) -> J`` differentiates through every
iteration (Newton steps, the LU of xp.solve: discretise, then differentiate).
``IMPLICIT[problem] = (solve, residual, objective)`` gives the same J as
``objective(xp, x, theta, **data)`` where x = solve(xp, theta, **data) solves
residual(xp, x, theta, **data) = 0, so that a framework's implicit-function
rule can replace the iterations. The problems' fixed data arrive as inputs;
the formulas are written here, independently of the catalogue's.
"""

NEWTON_STEPS = 60
TRIPLE_ROOT_NEWTON_STEPS = 100   # linear convergence at the triple root
GD_STEP, GD_STEPS = 0.1, 1000
DENSE_DIFFUSION_LIMIT = 2000     # the frameworks solve the diffusion system densely


def half_sumsq(xp, r):
    return xp.sum(0.5 * r * r)


# --- linear_system: A x = theta, J = 0.5 ||x - x_ref||^2 ---
def _linear_solve(xp, theta, A, x_ref):
    return xp.solve(A, theta)


def _linear_residual(xp, x, theta, A, x_ref):
    return A @ x - theta


def _linear_objective(xp, x, theta, A, x_ref):
    return half_sumsq(xp, x - x_ref)


# --- scalar_nonlinear: r(v) = k (a - v) (1 - b / sqrt(b^2 + 2 a v - v^2)) - F ---
def _spring_residual(xp, v, theta, v_ref, force, v_start):
    a, b, k = theta[0], theta[1], theta[2]
    return k * (a - v) * (1 - b / xp.sqrt(b * b + 2 * a * v - v * v)) - force


def _spring_solve(xp, theta, v_ref, force, v_start):
    a, b, k = theta[0], theta[1], theta[2]

    def newton(v):
        s = xp.sqrt(b * b + 2 * a * v - v * v)
        dv = -k * (1 - b / s) + k * b * (a - v) ** 2 / s**3
        return v - _spring_residual(xp, v, theta, v_ref, force, v_start) / dv
    return xp.fori(NEWTON_STEPS, newton, 0 * theta[:1] + v_start)


def _spring_objective(xp, v, theta, v_ref, force, v_start):
    return half_sumsq(xp, v - v_ref)


# --- nonlinear_system: r = [x0 + t0 d^3 + t1, t2 (d - t3)^3], d = x0 - x1 ---
def _system_residual(xp, x, t, x_start):
    d = x[0] - x[1]
    return xp.stack([x[0] + t[0] * d**3 + t[1], t[2] * (d - t[3]) ** 3])


def _system_solve(xp, theta, x_start):
    def newton(x):
        d = x[0] - x[1]
        g1, g2 = 3 * theta[0] * d**2, 3 * theta[2] * (d - theta[3]) ** 2
        jac = xp.stack([xp.stack([1 + g1, -g1]), xp.stack([g2, -g2])])
        return x - xp.solve(jac, _system_residual(xp, x, theta, x_start))
    return xp.fori(TRIPLE_ROOT_NEWTON_STEPS, newton, 0 * theta[:2] + x_start)


def _system_objective(xp, x, theta, x_start):
    return half_sumsq(xp, x)


# --- unrolled_gd: x_{t+1} = x_t - 0.1 (theta x_t - b) from x0; gd_fixed_point: theta x* = b ---
# The iterate is kept of shape (1,): torch's forward mode promotes the tangent of
# (python float) * (0-d float32 tensor) to float64, which the harness flags.
def _gd_step(xp, theta, b):
    """x -> x - 0.1 (theta x - b), as x + (s x + c) with s = -0.1 theta and
    c = 0.1 b formed once. In torch each of the 1000 steps' operations pays
    its dispatch at every transform level; against theta x - b followed by
    xp.axpy, gd_trajectory's JVP took 42 ms instead of 52, its HVPs 126-278
    ms instead of 187-338 (medians of 3, float64). Not (1 - 0.1 theta) x +
    c: that slope's rounding repeats in every step (the iterate 2.5e-14 off
    after 1000 steps, against 9e-16 here). c is shaped like theta through
    xp.axpy: torch's forward-over-reverse turns (Python float) * (0-d
    float32 b) into float64 (see ode._axpy)."""
    scale, offset = -GD_STEP * theta, xp.axpy(GD_STEP, b, 0 * theta)
    return lambda x: x + (scale * x + offset)


def _gd_final(xp, theta, x0, b):
    return xp.fori(GD_STEPS, _gd_step(xp, theta, b), 0 * theta + x0)[0]


def gd_trajectory(xp, theta, x0, b):
    """x_0, ..., x_1000: its Jacobian is the unrolling curve. b, fixed and used
    in every step, is lifted for the forward-mode cells that dominate its
    checks (the loss of unrolled_gd is differentiated in reverse mode, where a
    lift costs 12 % in torch)."""
    b, = xp.lift((b,), (theta,))
    return xp.iterates(GD_STEPS, _gd_step(xp, theta, b), 0 * theta + x0)[:, 0]


# --- diffusion: A(kappa) u = 1, A = D^T diag(exp theta) D / h^2, dense ---
def _diffusion_matrix(xp, theta):
    P = theta.shape[0]
    if P > DENSE_DIFFUSION_LIMIT:
        raise NotImplementedError(f"diffusion with P = {P}: the dense solve here needs P <= "
                                  f"{DENSE_DIFFUSION_LIMIT}; use the numpy methods for larger P")
    return _tridiagonal_stiffness(xp, xp.exp(theta)) * P**2


def _tridiagonal_stiffness(xp, kappa):
    """D^T diag(kappa) D, D the (P, P - 1) difference matrix, from its three
    diagonals: kappa_i + kappa_{i+1} on the main one, -kappa_{i+1} beside it.
    The same matrix to the bit as the product (which only adds exact zeros
    to those terms), without its (P - 1) x P x (P - 1) multiplication and the
    two more of reverse mode: at P = 1000 in torch the matrix took 50 ms
    instead of 2.6, the gradient 154 ms instead of 73, an HVP 391 ms
    instead of 107."""
    inner = kappa[1:-1]
    return xp.diag(kappa[:-1] + kappa[1:]) - xp.diag(inner, 1) - xp.diag(inner, -1)


def _diffusion_solve(xp, theta, u_obs):
    return xp.solve(_diffusion_matrix(xp, theta), 0 * u_obs + 1)


def _diffusion_residual(xp, u, theta, u_obs):
    return _diffusion_matrix(xp, theta) @ u - 1


def _diffusion_objective(xp, u, theta, u_obs):
    return half_sumsq(xp, u - u_obs) / theta.shape[0]


def _through(solve, objective):
    return lambda xp, theta, **data: objective(xp, solve(xp, theta, **data), theta, **data)


IMPLICIT = {
    "linear_system": (_linear_solve, _linear_residual, _linear_objective),
    "scalar_nonlinear": (_spring_solve, _spring_residual, _spring_objective),
    "nonlinear_system": (_system_solve, _system_residual, _system_objective),
    "diffusion": (_diffusion_solve, _diffusion_residual, _diffusion_objective),
    "gd_fixed_point": (lambda xp, theta, x0, b: b / theta,           # x* = b / theta
                       lambda xp, x, theta, x0, b: theta * x - b,    # f'(x) = theta x - b
                       lambda xp, x, theta, x0, b: x[0]),
}

LOSSES = {**{name: _through(solve, objective) for name, (solve, _, objective) in IMPLICIT.items()},
          "unrolled_gd": _gd_final}
PRIMALS = {"gd_trajectory": gd_trajectory}
