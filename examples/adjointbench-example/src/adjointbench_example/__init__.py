"""A worked third-party plug-in of adjointbench.

- :mod:`.problems`: two problems the catalogue does not have, one defined by a
  sympy closed form (logsumexp), one by a high-precision primal written once
  against adjointbench's array namespace (a tridiagonal solve);
- :mod:`.rules`: hand-written NumPy rules for both, as an implementation;
- :mod:`.jax_rules`: logsumexp with a ``jax.custom_vjp``;
- :mod:`.torch_rules`: the tridiagonal solve as a ``torch.autograd.Function``.

Its tests (``tests/``) check all of them with ``adjointbench.testing`` and
the pytest plugin.
"""
