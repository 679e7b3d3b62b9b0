def l2_loss(xp, y, y_ref):
    # 0.5 * sum(r * r) would give float64 tangents for float32 inputs under
    # torch.func.jvp (Python-scalar promotion on a 0-d output, torch 2.13)
    r = y - y_ref
    return xp.sum(0.5 * r * r)


def softmax(xp, x):
    e = xp.exp(x - xp.max(x))
    return e / xp.sum(e)


PRIMALS = {"l2_loss": l2_loss, "softmax": softmax}
