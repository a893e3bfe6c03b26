"""Plain-torch definitions of torchvision-family classifiers at their real sizes (torchvision is not
installable here), random weights, plus the ONNX export helper the corpus tests share.

    module = randomised(ARCHITECTURES["resnet18"]())  # eval mode, BN statistics that matter
    export(module, "resnet18.onnx", "dynamo", 21, (3, 224, 224))

Layer names and shapes follow torchvision; pretrained weights are neither needed nor loadable.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

EXPORTERS = ("torchscript", "dynamo")


def _conv_bn(
    cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: type | None = nn.ReLU
) -> nn.Sequential:
    layers = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    return nn.Sequential(*layers, *([act()] if act else []))


def _divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


# --- ResNet -------------------------------------------------------------------------------------
class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(cin, width, 3, stride), _conv_bn(width, width, 3, act=None)
        )
        self.down = _shortcut(cin, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.down(x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(cin, width, 1),
            _conv_bn(width, width, 3, stride),
            _conv_bn(width, width * 4, 1, act=None),
        )
        self.down = _shortcut(cin, width * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.down(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    return (
        nn.Identity() if cin == cout and stride == 1 else _conv_bn(cin, cout, 1, stride, act=None)
    )


def resnet(block: type, depths: tuple[int, ...], classes: int = 1000) -> nn.Module:
    layers, cin = [_conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)], 64
    for i, depth in enumerate(depths):
        width = 64 * 2**i
        for j in range(depth):
            layers.append(block(cin, width, 2 if j == 0 and i > 0 else 1))
            cin = width * block.expansion
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


# --- MobileNetV2 / V3, EfficientNet ------------------------------------------------------------
class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeezed: int, act: type, gate: type) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(channels, squeezed, 1), nn.Conv2d(squeezed, channels, 1)
        self.act, self.gate = act(), gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gate(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * s


class _InvertedResidual(nn.Module):
    """expand 1x1 -> depthwise kxk (stride) -> [squeeze-excite] -> project 1x1, residual if
    shapes allow (MobileNetV2/V3 and EfficientNet's MBConv)."""

    def __init__(
        self, cin: int, hidden: int, cout: int, k: int, stride: int, act: type, se: nn.Module | None
    ) -> None:
        super().__init__()
        layers = [] if hidden == cin else [_conv_bn(cin, hidden, 1, act=act)]
        layers += [_conv_bn(hidden, hidden, k, stride, groups=hidden, act=act)]
        layers += [se] if se is not None else []
        layers += [_conv_bn(hidden, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def mobilenet_v2(classes: int = 1000) -> nn.Module:
    config = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]
    layers, cin = [_conv_bn(3, 32, 3, 2, act=nn.ReLU6)], 32
    for t, c, n, s in config:
        for i in range(n):
            layers.append(_InvertedResidual(cin, cin * t, c, 3, s if i == 0 else 1, nn.ReLU6, None))
            cin = c
    layers += [_conv_bn(cin, 1280, 1, act=nn.ReLU6), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers, nn.Dropout(0.2), nn.Linear(1280, classes))


def mobilenet_v3_small(classes: int = 1000) -> nn.Module:
    re, hs = nn.ReLU, nn.Hardswish
    config = [
        (3, 16, 16, True, re, 2), (3, 72, 24, False, re, 2), (3, 88, 24, False, re, 1),
        (5, 96, 40, True, hs, 2), (5, 240, 40, True, hs, 1), (5, 240, 40, True, hs, 1),
        (5, 120, 48, True, hs, 1), (5, 144, 48, True, hs, 1), (5, 288, 96, True, hs, 2),
        (5, 576, 96, True, hs, 1), (5, 576, 96, True, hs, 1),
    ]  # fmt: skip
    layers, cin = [_conv_bn(3, 16, 3, 2, act=hs)], 16
    for k, hidden, cout, se, act, stride in config:
        excite = (
            _SqueezeExcite(hidden, _divisible(hidden // 4), nn.ReLU, nn.Hardsigmoid) if se else None
        )
        layers.append(_InvertedResidual(cin, hidden, cout, k, stride, act, excite))
        cin = cout
    layers += [_conv_bn(cin, 576, 1, act=hs), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(
        *layers, nn.Linear(576, 1024), hs(), nn.Dropout(0.2), nn.Linear(1024, classes)
    )


def efficientnet_b0(classes: int = 1000) -> nn.Module:
    config = [
        (1, 3, 1, 16, 1),
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 2),
        (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4),
        (6, 3, 1, 320, 1),
    ]
    layers, cin = [_conv_bn(3, 32, 3, 2, act=nn.SiLU)], 32
    for t, k, s, c, n in config:
        for i in range(n):
            excite = _SqueezeExcite(cin * t, max(1, cin // 4), nn.SiLU, nn.Sigmoid)
            layers.append(
                _InvertedResidual(cin, cin * t, c, k, s if i == 0 else 1, nn.SiLU, excite)
            )
            cin = c
    layers += [_conv_bn(cin, 1280, 1, act=nn.SiLU), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers, nn.Dropout(0.2), nn.Linear(1280, classes))


# --- SqueezeNet 1.1, DenseNet-121, ShuffleNetV2, VGG-11-BN, RegNetX-400MF -----------------------
class _Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
        self.e1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.e3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.e1(s), self.e3(s)], 1)


def squeezenet1_1(classes: int = 1000) -> nn.Module:
    pool = partial(nn.MaxPool2d, 3, 2, ceil_mode=True)
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, 2), nn.ReLU(), pool(), _Fire(64, 16, 64), _Fire(128, 16, 64), pool(),
        _Fire(128, 32, 128), _Fire(256, 32, 128), pool(), _Fire(256, 48, 192), _Fire(384, 48, 192),
        _Fire(384, 64, 256), _Fire(512, 64, 256), nn.Dropout(0.5), nn.Conv2d(512, classes, 1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth), nn.ReLU(), nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


def densenet121(classes: int = 1000) -> nn.Module:
    layers = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    cin = 64
    for i, depth in enumerate((6, 12, 24, 16)):
        for _ in range(depth):
            layers.append(_DenseLayer(cin))
            cin += 32
        if i < 3:
            layers += [
                nn.BatchNorm2d(cin),
                nn.ReLU(),
                nn.Conv2d(cin, cin // 2, 1, bias=False),
                nn.AvgPool2d(2, 2),
            ]
            cin //= 2
    layers += [nn.BatchNorm2d(cin), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers, nn.Linear(cin, classes))


class _ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        half = cout // 2
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(
                _conv_bn(cin, cin, 3, stride, groups=cin, act=None), _conv_bn(cin, half, 1)
            )
        source = cin if stride > 1 else half
        self.branch2 = nn.Sequential(
            _conv_bn(source, half, 1),
            _conv_bn(half, half, 3, stride, groups=half, act=None),
            _conv_bn(half, half, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat([a, self.branch2(b)], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


def shufflenet_v2_x1_0(classes: int = 1000) -> nn.Module:
    layers, cin = [_conv_bn(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1)], 24
    for repeats, cout in zip((4, 8, 4), (116, 232, 464), strict=True):
        for i in range(repeats):
            layers.append(_ShuffleUnit(cin, cout, 2 if i == 0 else 1))
            cin = cout
    layers += [_conv_bn(cin, 1024, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers, nn.Linear(1024, classes))


def vgg11_bn(classes: int = 1000) -> nn.Module:
    layers, cin = [], 3
    for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
            cin = v
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Linear(512 * 49, 4096), nn.ReLU(),
        nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, classes),
    )  # fmt: skip


class _RegNetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, group_width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(cin, cout, 1),
            _conv_bn(cout, cout, 3, stride, groups=cout // group_width),
            _conv_bn(cout, cout, 1, act=None),
        )
        self.down = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.down(x))


def regnet_x_400mf(classes: int = 1000) -> nn.Module:
    layers, cin = [_conv_bn(3, 32, 3, 2)], 32
    for depth, width in zip((1, 2, 7, 12), (32, 64, 160, 400), strict=True):
        for i in range(depth):
            layers.append(_RegNetBlock(cin, width, 2 if i == 0 else 1))
            cin = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


# --- ConvNeXt-tiny, ViT-B/16 --------------------------------------------------------------------
class _LayerNorm2d(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.mlp = nn.Sequential(
            nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)
        )
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mlp(self.dw(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + self.layer_scale * y


def convnext_tiny(classes: int = 1000) -> nn.Module:
    dims = (96, 192, 384, 768)
    layers = [nn.Conv2d(3, 96, 4, 4), _LayerNorm2d(96, eps=1e-6)]
    for i, (depth, dim) in enumerate(zip((3, 3, 9, 3), dims, strict=True)):
        if i > 0:
            layers += [_LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dim, 2, 2)]
        layers += [_ConvNeXtBlock(dim) for _ in range(depth)]
    layers += [nn.AdaptiveAvgPool2d(1), _LayerNorm2d(768, eps=1e-6), nn.Flatten()]
    return nn.Sequential(*layers, nn.Linear(768, classes))


class _EncoderBlock(nn.Module):
    def __init__(self, dim: int = 768, heads: int = 12, hidden: int = 3072) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attention(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class VisionTransformer(nn.Module):
    def __init__(
        self, classes: int = 1000, size: int = 224, patch: int = 16, dim: int = 768, depth: int = 12
    ) -> None:
        super().__init__()
        self.patches = nn.Conv2d(3, dim, patch, patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, dim) * 0.02)
        self.encoder = nn.Sequential(*[_EncoderBlock(dim) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        cls = self.class_token.expand(x.shape[0], -1, -1)  # len(x) would trace as a constant
        tokens = torch.cat([cls, tokens], 1) + self.position
        return self.head(self.ln(self.encoder(tokens))[:, 0])


ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "resnet18": partial(resnet, _Basic, (2, 2, 2, 2)),
    "resnet50": partial(resnet, _Bottleneck, (3, 4, 6, 3)),
    "mobilenet_v2": mobilenet_v2,
    "mobilenet_v3_small": mobilenet_v3_small,
    "efficientnet_b0": efficientnet_b0,
    "squeezenet1_1": squeezenet1_1,
    "densenet121": densenet121,
    "convnext_tiny": convnext_tiny,
    "shufflenet_v2_x1_0": shufflenet_v2_x1_0,
    "vgg11_bn": vgg11_bn,
    "regnet_x_400mf": regnet_x_400mf,
    "vit_b_16": VisionTransformer,
}


def randomised(
    module: nn.Module, seed: int = 0, input_shape: tuple[int, int, int] = (3, 224, 224)
) -> nn.Module:
    """Seeded random weights in eval mode, with normalisation that matters: BatchNorm running
    statistics measured on random images and then perturbed (so they neither cancel nor blow
    up the activations), random BN/LayerNorm affine parameters, ConvNeXt layer scales of 0.1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(_like(p, generator, p.std().item() if p.numel() > 1 and p.dim() > 1 else 0.0))
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d | nn.LayerNorm) and m.weight is not None:
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=generator))
                m.bias.copy_(0.2 * torch.rand(m.bias.shape, generator=generator) - 0.1)
            if isinstance(m, _ConvNeXtBlock):
                m.layer_scale.fill_(0.1)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 1.0  # running statistics = those of the calibration batch
        module.train()
        for m in module.modules():
            if isinstance(m, nn.Dropout):  # no global-RNG draws: the same module in any test order
                m.eval()
        module(torch.rand(4, *input_shape, generator=generator))
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                # a channel left constant by dead ReLUs would divide float32 noise by ~sqrt(eps)
                m.running_var.clamp_(min=0.1 * m.running_var.median().item())
                m.running_var.mul_(0.8 + 0.4 * torch.rand(m.running_var.shape, generator=generator))
                m.running_mean.add_(
                    0.1
                    * m.running_var.sqrt()
                    * torch.randn(m.running_mean.shape, generator=generator)
                )
    return module.eval()


def _like(p: torch.Tensor, generator: torch.Generator, std: float) -> torch.Tensor:
    """Weights keep torch's default init scale (already fan-in aware); vectors get small noise."""
    if p.dim() > 1:
        return torch.randn(p.shape, generator=generator) * std
    return 0.05 * torch.randn(p.shape, generator=generator)


def export(
    module: nn.Module,
    path: str | Path,
    exporter: str,
    opset: int,
    input_shape: tuple[int, int, int],
) -> Path:
    """Export `module` to `path` with a dynamic batch: exporter "torchscript" (dynamo=False) or
    "dynamo" (weights kept in the one file). Returns the path."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, not {exporter!r}")
    path = Path(path)
    x = torch.rand(2, *input_shape)
    if exporter == "torchscript":
        torch.onnx.export(
            module, (x,), str(path), dynamo=False, opset_version=opset, input_names=["input"],
            output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        )  # fmt: skip
    else:
        batch = torch.export.Dim("N")
        program = torch.onnx.export(
            module, (x,), dynamo=True, opset_version=opset, dynamic_shapes=({0: batch},),
            input_names=["input"], output_names=["logits"],
        )  # fmt: skip
        program.save(str(path), external_data=False)
    return path
