"""A tridiagonal solve as a torch.autograd.Function, with both rules.

torch.func (which adjointbench's torch backends use) needs the
``setup_context`` style; ``jvp`` gives forward mode, ``backward`` reverse."""

import torch


def _dense(lower, diag, upper):
    return torch.diag(diag) + torch.diag(lower, -1) + torch.diag(upper, 1)


def _t_times(x, lower, diag, upper):
    """T x for the tridiagonal T(lower, diag, upper), without forming T."""
    out = diag * x
    out = out + torch.cat([torch.zeros_like(x[:1]), lower * x[:-1]])
    return out + torch.cat([upper * x[1:], torch.zeros_like(x[:1])])


class TridiagonalSolve(torch.autograd.Function):
    @staticmethod
    def forward(lower, diag, upper, rhs):
        return torch.linalg.solve(_dense(lower, diag, upper), rhs)

    @staticmethod
    def setup_context(ctx, inputs, output):
        lower, diag, upper, _ = inputs
        ctx.save_for_backward(lower, diag, upper, output)
        ctx.save_for_forward(lower, diag, upper, output)

    @staticmethod
    def backward(ctx, x_bar):
        lower, diag, upper, x = ctx.saved_tensors
        lam = torch.linalg.solve(_dense(lower, diag, upper).T, x_bar)
        return -lam[1:] * x[:-1], -lam * x, -lam[:-1] * x[1:], lam

    @staticmethod
    def jvp(ctx, dlower, ddiag, dupper, drhs):
        lower, diag, upper, x = ctx.saved_tensors
        zero = torch.zeros_like
        dlower = zero(lower) if dlower is None else dlower
        ddiag = zero(diag) if ddiag is None else ddiag
        dupper = zero(upper) if dupper is None else dupper
        drhs = zero(x) if drhs is None else drhs
        return torch.linalg.solve(_dense(lower, diag, upper),
                                  drhs - _t_times(x, dlower, ddiag, dupper))


def tridiagonal_solve(lower, diag, upper, rhs):
    return TridiagonalSolve.apply(lower, diag, upper, rhs)
