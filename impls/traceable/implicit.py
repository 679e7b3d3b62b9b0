"""Newton's method with a fixed number of steps, differentiated through."""

NEWTON_STEPS = 16


def scalar_root_start(xp, theta):
    # |x|^3 < |t1| and t0 |x| < |t1|: start above the root on the convex side
    t0, t1 = theta[0], theta[1]
    return xp.sign(t1) * xp.minimum(xp.abs(t1) / t0, xp.abs(t1) ** (1 / 3))


def scalar_root(xp, theta):
    t0, t1 = theta[0], theta[1]
    step = lambda x: x - (x**3 + t0 * x - t1) / (xp.scale(3, x) * x + t0)
    return xp.fori(NEWTON_STEPS, step, scalar_root_start(xp, theta))


def nonlinear_solve(xp, A, theta):
    # r = A x + x^3 - theta, dr/dx = A + 3 diag(x^2)
    A, = xp.lift((A,), (theta,))  # fixed, used twice in each Newton step
    step = lambda x: x - xp.solve(A + xp.diag(xp.scale(3, x) * x), A @ x + x**3 - theta)
    return xp.fori(NEWTON_STEPS, step, xp.solve(A, theta))


PRIMALS = {"scalar_root": scalar_root, "nonlinear_solve": nonlinear_solve}


# --- the same solutions as roots of residuals, for implicit-function rules ---
# Each entry: (solve(xp, **inputs) -> x, residual(xp, x, **inputs) -> r). The
# frameworks wrap them so that dx = -(dr/dx)^-1 (dr/dtheta) dtheta.

RESIDUALS = {
    "scalar_root": (scalar_root,
                    lambda xp, x, theta: x**3 + theta[0] * x - theta[1]),
    "nonlinear_solve": (nonlinear_solve,
                        lambda xp, x, A, theta: A @ x + x**3 - theta),
    "linear_solve": (lambda xp, A, b: xp.solve(A, b),
                     lambda xp, x, A, b: A @ x - b),
}
