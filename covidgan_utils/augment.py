"""DiffAugment (Zhao et al., NeurIPS 2020) for both frameworks: the same random, differentiable edits on real and fake images.

With only a few hundred real X-rays the discriminator memorises them and training collapses. DiffAugment
applies one random transformation to every image the discriminator sees, real and generated alike, in
both players' steps. Because every operation is differentiable, the generator still gets gradients,
and because fake images are augmented too, the generator is not pushed to produce augmented-looking X-rays.

Policies (comma-separated): ``color`` (brightness and contrast; the X-rays are gray, so no saturation),
``translation`` (shift by up to 1/8 of the side, padding with mid-gray) and ``cutout`` (one mid-gray square
of half the side). The functions import torch / tensorflow only when called.
"""

from __future__ import annotations

POLICIES = ("color", "translation", "cutout")
DEFAULT_POLICY = "color,translation,cutout"
TRANSLATION_RATIO = 0.125  # at most 1/8 of the image side, as in the paper
CUTOUT_RATIO = 0.5  # a square of half the image side, as in the paper


def parse_policy(policy) -> tuple[str, ...]:
    """Normalise a policy: None, "", "off", "none" or False -> (); True or "on" -> the default; else a checked tuple."""
    if policy is None or policy is False:
        return ()
    if policy is True:
        policy = DEFAULT_POLICY
    if isinstance(policy, str):
        text = policy.strip().lower()
        if text in ("", "off", "none", "false", "0"):
            return ()
        if text in ("on", "true", "default", "1"):
            text = DEFAULT_POLICY
        names = [p.strip() for p in text.split(",") if p.strip()]
    else:
        names = [str(p).strip().lower() for p in policy]
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(
            f"Unknown DiffAugment policy {unknown}: use a comma-separated subset of {', '.join(POLICIES)}."
        )
    return tuple(dict.fromkeys(names))  # keep order, drop repeats


def describe(policy) -> str:
    """One line for logs and tables: "off" or the policy names."""
    names = parse_policy(policy)
    return ",".join(names) if names else "off"


# ------------------------------------------------------------------------------------------ PyTorch


def diffaugment_torch(x, policy, value_range=(0.0, 1.0)):
    """Augment a float batch (N,C,H,W) with torch's global RNG (saved in checkpoints, so resume stays exact)."""
    import torch
    from torch.nn import functional as F

    names = parse_policy(policy)
    if not names:
        return x
    lo, hi = value_range
    span, mid = hi - lo, (hi + lo) / 2
    n, _, h, w = x.shape
    dev, dt = x.device, x.dtype
    if "color" in names:
        # brightness: add up to +-1/4 of the range; contrast: scale the deviation from each image's mean by 0.5-1.5
        x = x + (torch.rand(n, 1, 1, 1, device=dev, dtype=dt) - 0.5) * (span / 2)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (torch.rand(n, 1, 1, 1, device=dev, dtype=dt) + 0.5) + mean
    if "translation" in names:
        sh, sw = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
        ty = torch.randint(-sh, sh + 1, (n, 1, 1), device=dev)
        tx = torch.randint(-sw, sw + 1, (n, 1, 1), device=dev)
        rows = torch.arange(h, device=dev).view(1, h, 1) + ty + sh  # indices into the padded image
        cols = torch.arange(w, device=dev).view(1, 1, w) + tx + sw
        padded = F.pad(x, [sw, sw, sh, sh], value=mid)
        batch = torch.arange(n, device=dev).view(n, 1, 1)
        x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (N,H,W,C) gather -> (N,C,H,W)
    if "cutout" in names:
        ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
        # the square's top-left corner; it may hang over the border, as in the paper
        oy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=dev) - ch // 2
        ox = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=dev) - cw // 2
        yy = torch.arange(h, device=dev).view(1, h, 1)
        xx = torch.arange(w, device=dev).view(1, 1, w)
        inside = (yy >= oy) & (yy < oy + ch) & (xx >= ox) & (xx < ox + cw)
        keep = (~inside).unsqueeze(1).to(dt)
        x = x * keep + mid * (1 - keep)
    return x.contiguous()


# --------------------------------------------------------------------------------------- TensorFlow


def diffaugment_tf(x, policy, rng, value_range=(-1.0, 1.0)):
    """Augment a float batch (N,H,W,C) with a tf.random.Generator (checkpointed, so resume stays exact)."""
    import tensorflow as tf

    names = parse_policy(policy)
    if not names:
        return x
    lo, hi = value_range
    span, mid = hi - lo, (hi + lo) / 2
    shape = tf.shape(x)
    n, h, w = shape[0], x.shape[1], x.shape[2]
    if "color" in names:
        x = x + (rng.uniform([n, 1, 1, 1], dtype=x.dtype) - 0.5) * (span / 2)
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = (x - mean) * (rng.uniform([n, 1, 1, 1], dtype=x.dtype) + 0.5) + mean
    if "translation" in names:
        sh, sw = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
        ty = rng.uniform([n, 1, 1], minval=-sh, maxval=sh + 1, dtype=tf.int32)
        tx = rng.uniform([n, 1, 1], minval=-sw, maxval=sw + 1, dtype=tf.int32)
        rows = tf.broadcast_to(tf.reshape(tf.range(h), [1, h, 1]) + ty + sh, [n, h, w])
        cols = tf.broadcast_to(tf.reshape(tf.range(w), [1, 1, w]) + tx + sw, [n, h, w])
        padded = tf.pad(x, [[0, 0], [sh, sh], [sw, sw], [0, 0]], constant_values=mid)
        x = tf.gather_nd(padded, tf.stack([rows, cols], axis=-1), batch_dims=1)
    if "cutout" in names:
        ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
        oy = rng.uniform([n, 1, 1], minval=0, maxval=h + (1 - ch % 2), dtype=tf.int32) - ch // 2
        ox = rng.uniform([n, 1, 1], minval=0, maxval=w + (1 - cw % 2), dtype=tf.int32) - cw // 2
        yy = tf.reshape(tf.range(h), [1, h, 1])
        xx = tf.reshape(tf.range(w), [1, 1, w])
        inside = (yy >= oy) & (yy < oy + ch) & (xx >= ox) & (xx < ox + cw)
        keep = tf.cast(tf.logical_not(inside), x.dtype)[..., None]
        x = x * keep + mid * (1 - keep)
    return x
