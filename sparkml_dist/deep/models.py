"""Small reference networks for tests, benchmarks and examples (a newcomer reads each in a minute)."""

from __future__ import annotations

import torch
from torch import nn


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al., 1998) sized for ``in_size`` x ``in_size`` single-channel images.

    conv(6, 5x5, pad 2) -> ReLU -> maxpool 2 -> conv(16, 5x5) -> ReLU -> maxpool 2 -> 120 -> 84 -> ``classes``, the
    modern variant (ReLU and max pooling where the paper had tanh and subsampling). Inputs under 16 pixels wide get a
    3x3 second convolution (padded) and no second pooling, which would leave 2x2 of an 8x8 digit. Takes
    ``(n, 1, s, s)`` or flat ``(n, s*s)`` rows (reshaped here), so it trains straight from a ``VectorAssembler`` column.
    ``LeNet5(8)`` fits scikit-learn's 8x8 ``digits``; ``LeNet5(28)`` MNIST.
    """

    def __init__(self, in_size: int = 8, classes: int = 10):
        super().__init__()
        self.in_size = in_size
        k2 = 3 if in_size < 16 else 5
        layers: list[nn.Module] = [nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                   nn.Conv2d(6, 16, k2, padding=1 if k2 == 3 else 0), nn.ReLU()]
        if in_size >= 16:
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, 1, in_size, in_size)).numel()
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                                        nn.Linear(84, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.reshape(len(x), 1, self.in_size, self.in_size)
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """``in_features`` -> hidden layers with ReLU (and ``dropout`` after each) -> ``out_features``."""

    def __init__(self, in_features: int, hidden: tuple[int, ...] = (64,), out_features: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


#: name -> network class, for job configs (``model: {name: lenet5, in_size: 8}``)
MODELS = {"lenet5": LeNet5, "mlp": MLP}


def build_model(name: str, **kwargs) -> nn.Module:
    """``MODELS[name](**kwargs)`` with an error naming the config key."""
    if name not in MODELS:
        raise ValueError(f"model.name={name!r}: expected one of {', '.join(MODELS)}")
    try:
        return MODELS[name](**kwargs)
    except TypeError as exc:
        raise ValueError(f"model: {name} does not take {kwargs} ({exc})") from exc
