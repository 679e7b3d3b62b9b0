"""Custom rules in PyTorch with torch.autograd.Function: implicit-function
rules (backward and jvp) and adjoint rules (backward only).

x(theta) solves r(x, theta) = 0:
  JVP:  dx = -(dr/dx)^-1 (dr/dtheta dtheta)
  VJP:  (dr/dx)^T lam = x_bar,  theta_bar = -(dr/dtheta)^T lam
``generate_vmap_rule`` lets torch.func.jacfwd/jacrev batch both.
"""

import torch
import torch.func


def _drdx(residual, x, params):
    return torch.func.jacfwd(lambda y: residual(y, *params))(x).reshape(x.numel(), x.numel())


def implicit_solution(solve, residual):
    """``solve(*params) -> x`` with its derivatives taken from ``residual(x, *params)``."""

    class Solution(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(*params):
            with torch.no_grad():
                return solve(*params)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(output, *inputs)
            ctx.save_for_forward(output, *inputs)

        @staticmethod
        def backward(ctx, x_bar):
            x, *params = ctx.saved_tensors
            lam = torch.linalg.solve(_drdx(residual, x, params).T, x_bar.reshape(-1))
            _, pullback = torch.func.vjp(lambda *p: residual(x, *p), *params)
            return tuple(-g for g in pullback(lam.reshape(x.shape)))

        @staticmethod
        def jvp(ctx, *tangents):
            x, *params = ctx.saved_tensors
            tangents = [torch.zeros_like(p) if t is None else t for p, t in zip(params, tangents)]
            dr = torch.func.jvp(lambda *p: residual(x, *p), tuple(params), tuple(tangents))[1]
            dx = torch.linalg.solve(_drdx(residual, x, params), dr.reshape(-1))
            return -dx.reshape(x.shape)

    return Solution.apply



def adjoint_solution(primal, adjoint):
    """``primal(*params) -> y`` whose VJP is ``adjoint(y, y_bar, *params)``
    (reverse mode only: no jvp is defined)."""

    class Solution(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(*params):
            with torch.no_grad():
                return primal(*params)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(output, *inputs)

        @staticmethod
        def backward(ctx, y_bar):
            y, *params = ctx.saved_tensors
            return tuple(adjoint(y, y_bar, *params))

    return Solution.apply
