"""Compare cw.assets.pretrained("efficientnet_lite0") with a PyTorch network built
from the same state dict, on the bundled photos. Optional: needs torch, which
cnnwidgets does not depend on; without it this says so and exits.

    python scripts/compare_efficientnet_torch.py

The PyTorch side is written here from the EfficientNet-Lite recipe, in the
plainest torch ops (F.pad with TensorFlow's "same" amounts, F.conv2d,
F.batch_norm, clamp for ReLU6), and loaded with ``torch.load`` -- torch's own
reader of the checkpoint, not cnnwidgets' numpy one -- so the two sides share
only the file. It prints each photo's top-5 from both and the largest logit
difference; it exits 1 when the top-1 classes differ or the logits differ by
more than ``--tolerance``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "grace_hopper")
# (repeats, kernel, stride, expand, filters in, filters out) of the seven stages.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def torch_logits(torch, state: dict, pixels: np.ndarray) -> np.ndarray:
    """(N, 224, 224, 3) raw pixels -> (N, 1000) logits, in float64 torch ops."""
    F = torch.nn.functional
    w = {k: v.double() for k, v in state.items() if v.is_floating_point()}

    def same_pad(x, k, s):
        n = x.shape[-1]
        total = max((-(-n // s) - 1) * s + k - n, 0)
        return F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))

    def conv(x, key, stride=1, groups=1):
        weight = w[key]
        return F.conv2d(same_pad(x, weight.shape[-1], stride), weight, stride=stride, groups=groups)

    def bn(x, prefix):
        return F.batch_norm(
            x,
            w[f"{prefix}.running_mean"],
            w[f"{prefix}.running_var"],
            w[f"{prefix}.weight"],
            w[f"{prefix}.bias"],
            False,
            0.0,
            1e-3,
        )

    def relu6(x):
        return x.clamp(0.0, 6.0)

    x = torch.from_numpy(pixels.astype(np.float64)).permute(0, 3, 1, 2)
    x = (x - 127.0) / 128.0
    x = relu6(bn(conv(x, "_conv_stem.weight", 2), "_bn0"))
    index = 0
    for repeats, _k, stride, expand, c_in, c_out in STAGES:
        for r in range(repeats):
            p = f"_blocks.{index}"
            s = stride if r == 0 else 1
            c = c_in if r == 0 else c_out
            h = x
            if expand != 1:
                h = relu6(bn(conv(h, f"{p}._expand_conv.weight"), f"{p}._bn0"))
            h = relu6(bn(conv(h, f"{p}._depthwise_conv.weight", s, groups=h.shape[1]), f"{p}._bn1"))
            h = bn(conv(h, f"{p}._project_conv.weight"), f"{p}._bn2")
            x = h + x if (s == 1 and c == c_out) else h
            index += 1
    x = relu6(bn(conv(x, "_conv_head.weight"), "_bn1"))
    x = x.mean(dim=(2, 3))
    return F.linear(x, w["_fc.weight"], w["_fc.bias"]).numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tolerance", type=float, default=1e-3, help="max abs logit difference")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("torch is not installed: nothing to compare (pip install torch to run this check)")
        return 0

    import cnnwidgets as cw
    from cnnwidgets.assets.pretrained import checkpoint_path

    state = torch.load(checkpoint_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    pixels = np.stack([cw.assets.photo(name, size=224) for name in PHOTOS])
    theirs = torch_logits(torch, state, pixels)
    ours = cw.assets.pretrained("efficientnet_lite0").predict(pixels, verbose=0)
    names = cw.assets.imagenet_class_names()

    def top5(row):
        p = np.exp(row - row.max())
        p /= p.sum()
        return ", ".join(f"{names[i]} {p[i]:.3f}" for i in np.argsort(-row)[:5])

    for name, a, b in zip(PHOTOS, ours, theirs):
        print(f"{name}\n  keras: {top5(a)}\n  torch: {top5(b)}")
    diff = float(np.abs(ours - theirs).max())
    same_top1 = bool((ours.argmax(1) == theirs.argmax(1)).all())
    print(
        f"torch {torch.__version__}: max |logit difference| = {diff:.2e} "
        f"(logits span {theirs.min():.1f}..{theirs.max():.1f}); same top-1: {same_top1}"
    )
    return 0 if same_top1 and diff <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
