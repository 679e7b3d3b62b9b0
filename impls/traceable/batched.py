"""Batched primals: the per-sample function applied to every column of x."""

from adjointbench.impls.traceable.ode import neural_ode


def batched_dense(xp, W, b, x):
    return xp.tanh(W @ x + b[:, None])


def batched_softmax(xp, x):
    e = xp.exp(x - xp.column_max(x))
    return e / xp.column_sum(e)


def batched_sin(xp, x):
    return xp.sin(x)


def batched_neural_ode(xp, u0, W, b):
    W, b = xp.lift((W, b[:, None]), (u0,))  # fixed inputs, used in 800 stages
    return neural_ode(xp, u0, W, b)


PRIMALS = {"batched_dense": batched_dense, "batched_softmax": batched_softmax,
           "batched_sin": batched_sin, "batched_neural_ode": batched_neural_ode}
