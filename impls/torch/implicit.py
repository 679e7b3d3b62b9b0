"""Custom rules in PyTorch with torch.autograd.Function: the implicit-function
rule of impls/autodiff.py (backward and jvp) and adjoint rules (backward
only). ``generate_vmap_rule`` lets torch.func.jacfwd/jacrev batch both."""

import torch
import torch.func

from adjointbench.impls.autodiff import implicit_cotangents, implicit_tangent


def implicit_solution(solve, residual):
    """``solve(*params) -> x`` with its derivatives taken from ``residual(x, *params)``."""
    from adjointbench.impls.torch import FRAMEWORK

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
            return implicit_cotangents(FRAMEWORK, residual, x, tuple(params), x_bar)

        @staticmethod
        def jvp(ctx, *tangents):
            x, *params = ctx.saved_tensors
            tangents = [torch.zeros_like(p) if t is None else t for p, t in zip(params, tangents)]
            return implicit_tangent(FRAMEWORK, residual, x, tuple(params), tuple(tangents))

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
