"""Scalar rules: x + y, x * y, sin x."""

import numpy as np

from adjointbench.impls.rules import Rule

# Second order: the tangent of the VJP (w fixed) along u.

# z = x + y.  dz = dx + dy;  x_bar = y_bar = z_bar.  Linear: H = 0.
scalar_add = Rule(
    primal=lambda x, y: x + y,
    forward=lambda x, y: (x + y, None),
    jvp=lambda res, dx, dy: dx + dy,
    vjp=lambda res, z_bar: (z_bar, z_bar),
    hvp=lambda inputs, w, ux, uy: (0 * ux, 0 * uy))

# z = x y.  dz = y dx + x dy;  x_bar = y z_bar, y_bar = x z_bar;  H u = (w u_y, w u_x).
scalar_mul = Rule(
    primal=lambda x, y: x * y,
    forward=lambda x, y: (x * y, (x, y)),
    jvp=lambda res, dx, dy: res[1] * dx + res[0] * dy,
    vjp=lambda res, z_bar: (res[1] * z_bar, res[0] * z_bar),
    hvp=lambda inputs, w, ux, uy: (w * uy, w * ux))

# z = sin x.  dz = cos(x) dx;  x_bar = cos(x) z_bar;  H u = -sin(x) w u.
scalar_sin = Rule(
    primal=lambda x: np.sin(x),
    forward=lambda x: (np.sin(x), np.cos(x)),
    jvp=lambda cos_x, dx: cos_x * dx,
    vjp=lambda cos_x, z_bar: (cos_x * z_bar,),
    hvp=lambda inputs, w, u: (-np.sin(inputs["x"]) * w * u,))

RULES = {"scalar_add": scalar_add, "scalar_mul": scalar_mul, "scalar_sin": scalar_sin}
