PRIMALS = {
    "scalar_add": lambda xp, x, y: x + y,
    "scalar_mul": lambda xp, x, y: x * y,
    "scalar_sin": lambda xp, x: xp.sin(x),
}
