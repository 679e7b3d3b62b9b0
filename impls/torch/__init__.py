"""PyTorch: torch.func jvp, vjp, jacfwd and jacrev."""

from types import SimpleNamespace

import numpy as np
import torch
import torch.func

from adjointbench.impls.autodiff import (custom_rule_implementation, per_sample_loop_implementation,
                            unrolled_implementation)

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _fori(n, body, init):
    carry = init
    for _ in range(n):
        carry = body(carry)
    return carry


def _iterates(n, body, init):
    """init and its n successors under body, stacked."""
    states = [init]
    for _ in range(n):
        states.append(body(states[-1]))
    return torch.stack(states)


XP = SimpleNamespace(exp=torch.exp, sin=torch.sin, tanh=torch.tanh, sum=torch.sum, max=torch.max,
                     abs=torch.abs, sign=torch.sign, minimum=torch.minimum, diag=torch.diag,
                     solve=torch.linalg.solve, fori=_fori, iterates=_iterates,
                     sqrt=torch.sqrt, cos=torch.cos, stack=torch.stack, concat=torch.cat,
                     const=lambda a, like: torch.as_tensor(a, dtype=like.dtype, device=like.device),
                     column_max=lambda x: torch.amax(x, dim=0, keepdim=True),
                     column_sum=lambda x: torch.sum(x, dim=0, keepdim=True))


class TorchFramework:
    name = "torch"
    xp = XP

    def devices(self):
        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)

    def put(self, array, dtype, device):
        return torch.as_tensor(np.asarray(array), dtype=DTYPES[dtype], device=device)

    def compile(self, f):
        return f  # eager: nothing to compile, nothing timed by accident

    def wait(self, result):
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def to_numpy(self, x):
        return x.detach().cpu().numpy()

    def jvp(self, f, primals, tangents):
        return torch.func.jvp(f, primals, tangents)[1]

    def vjp(self, f, primals, cotangent):
        return torch.func.vjp(f, *primals)[1](cotangent)

    def jacfwd(self, f, primals):
        return torch.func.jacfwd(f, argnums=tuple(range(len(primals))))(*primals)

    def jacrev(self, f, primals):
        return torch.func.jacrev(f, argnums=tuple(range(len(primals))))(*primals)

    def vmap_jacobian(self, g, x):
        return torch.func.vmap(torch.func.jacfwd(g), in_dims=-1, out_dims=-1)(x)


FRAMEWORK = TorchFramework()
implementation = unrolled_implementation("torch", FRAMEWORK)
loop_implementation = per_sample_loop_implementation("torch_loop", FRAMEWORK)

# Hand-written rules (implicit function, adjoint) instead of the solvers' iterations
from adjointbench.impls.torch.implicit import adjoint_solution, implicit_solution  # noqa: E402

implicit_implementation = custom_rule_implementation("torch_implicit", FRAMEWORK,
                                                     implicit_solution, adjoint_solution)
