"""The ODE sensitivity problems for AD frameworks (see impls/traceable):
the forced oscillator by RK4 between observations, and the neural ODE's
weights. ``LOSSES[problem](xp, theta, **data) -> J``; ``ADJOINT`` gives the
neural ODE's loss through its continuous adjoint rule instead."""

from adjointbench.impls.traceable.ode import neural_ode, neural_ode_adjoint
from adjointbench.impls.traceable.steady_state import half_sumsq

OSCILLATOR_SUBSTEPS = 20  # RK4 steps between observations: h = 20/99/20


def _oscillator_loss(xp, theta, y0, times, y_ref, weights, components):
    # y'' + c y' + k y = f cos(w t);  J = sum_i w_i 0.5 sum_c s_c (z_c(t_i) - ref_ic)^2
    c, k, f, w = theta[0], theta[1], theta[2], theta[3]
    accel = lambda t, y, v: f * xp.cos(w * t) - c * v - k * y

    def observe(i, y, v):
        return weights[i] * 0.5 * (components[0] * (y - y_ref[i, 0]) ** 2
                                   + components[1] * (v - y_ref[i, 1]) ** 2)

    def interval(carry):
        i, t, y, v, total = carry
        h = (times[i + 1] - times[i]) / OSCILLATOR_SUBSTEPS

        def rk4(state):
            t, y, v = state
            k1y, k1v = v, accel(t, y, v)
            k2y, k2v = v + 0.5 * h * k1v, accel(t + 0.5 * h, y + 0.5 * h * k1y, v + 0.5 * h * k1v)
            k3y, k3v = v + 0.5 * h * k2v, accel(t + 0.5 * h, y + 0.5 * h * k2y, v + 0.5 * h * k2v)
            k4y, k4v = v + h * k3v, accel(t + h, y + h * k3y, v + h * k3v)
            return (t + h, y + h / 6 * (k1y + 2 * k2y + 2 * k3y + k4y),
                    v + h / 6 * (k1v + 2 * k2v + 2 * k3v + k4v))

        t, y, v = xp.fori(OSCILLATOR_SUBSTEPS, rk4, (t, y, v))
        return i + 1, t, y, v, total + observe(i + 1, y, v)

    y, v = 0 * c + y0[0], 0 * c + y0[1]
    start = (0, 0 * c + times[0], y, v, observe(0, y, v))
    return xp.fori(times.shape[0] - 1, interval, start)[-1]


# --- neural_ode_params: theta = (W, b) flattened, P = n^2 + n ---
def _weights(theta, u0):
    n = u0.shape[0]
    return theta[:n * n].reshape(n, n), theta[n * n:]


def _neural_loss(xp, theta, u0, target):
    return half_sumsq(xp, neural_ode(xp, u0, *_weights(theta, u0)) - target)


def _neural_flow(xp, theta, u0, target):
    return neural_ode(xp, u0, *_weights(theta, u0))


def _neural_weight_adjoint(xp, u1, u_bar, theta, u0, target):
    _, W_bar, b_bar = neural_ode_adjoint(xp, u1, u_bar, u0, *_weights(theta, u0))
    return (xp.concat([W_bar.reshape(-1), b_bar]),)


LOSSES = {"forced_oscillator_terminal": _oscillator_loss,
          "forced_oscillator_trajectory": _oscillator_loss,
          "neural_ode_params": _neural_loss}

# (flow, adjoint(xp, flow output, its cotangent, theta, **data) -> (theta_bar,), objective)
ADJOINT = {"neural_ode_params": (_neural_flow, _neural_weight_adjoint,
                                 lambda xp, u1, theta, u0, target: half_sumsq(xp, u1 - target))}
