"""CBAM's channel and spatial gates (Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018).

Follows the official code (Jongchan/attention-module, MODELS/cbam.py): a shared MLP with biases
over average- and max-pooled descriptors, then a 7x7 conv + BN over the channel-wise max and mean
maps, each gate a sigmoid multiplied onto the features. Gates use `nn.ReLU` modules so captum's
guided methods can hook them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ablation.core.attentions import GATE_ORDERS

# CBAM's arrangements of its gates (the CBAM paper's Table 3), and each gate alone.

# Max pooling with indices (as the official code does) rather than `amax`: the same forward values,
# and a backward that scatters through the indices instead of re-comparing the whole tensor, which
# benchmarks/attention_cost.py measured at 2-4x the time of the pooling itself.
_POOLS = {
    "avg": lambda x: F.adaptive_avg_pool2d(x, 1).flatten(1),
    "max": lambda x: F.adaptive_max_pool2d(x, 1).flatten(1),
}


class ChannelGate(nn.Module):
    """Which channels matter: sigmoid(sum over pools of MLP(pool(x))) * x; pools `avg+max` by default."""

    def __init__(self, channels: int, reduction: int = 16, pooling: str = "avg+max") -> None:
        super().__init__()
        if channels % reduction:
            raise ValueError(f"reduction {reduction} does not divide {channels} channels")
        pools = pooling.split("+")
        if not pools or any(p not in _POOLS for p in pools) or len(set(pools)) != len(pools):
            raise ValueError(f"pooling {pooling!r}: expected 'avg', 'max' or 'avg+max'")
        self.pools = [_POOLS[p] for p in pools]
        hidden = channels // reduction
        self.mlp = nn.Sequential(  # the official layout, so its state-dict names (mlp.1, mlp.3) match
            nn.Flatten(),
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
        )
        self.sigmoid = nn.Sigmoid()

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The gate Mc(x), shaped (N, C, 1, 1)."""
        logits = sum(self.mlp(pool(x)) for pool in self.pools)
        return self.sigmoid(logits)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class SpatialGate(nn.Module):
    """Where the features matter: sigmoid(BN(conv([max_c(x), mean_c(x)]))) * x."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        # The official code's BN settings (momentum 0.01), kept for fidelity.
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)
        self.sigmoid = nn.Sigmoid()

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The gate Ms(x), shaped (N, 1, H, W)."""
        pooled = torch.cat([x.max(dim=1, keepdim=True).values, x.mean(dim=1, keepdim=True)], dim=1)
        return self.sigmoid(self.bn(self.conv(pooled)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class CBAM(nn.Module):
    """Channel gate, then spatial gate (the CBAM paper's best order); `gates` rearranges or drops one.

    `gates`: `channel+spatial` (default), `spatial+channel`, `parallel`, `channel` or `spatial`.
    `parallel` computes both gates from the same input and applies them together, x * Mc(x) * Ms(x):
    the CBAM paper compares this arrangement (its Table 3) without writing it out, and this is the
    reading that keeps each gate exactly as defined and changes only what the second gate sees.
    `channel_gate=False` / `spatial_gate=False` switch a gate off whatever the arrangement; a gate
    that is off is `nn.Identity`, so switching it off removes exactly its parameters.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7, pooling: str = "avg+max",
                 gates: str = "channel+spatial", channel_gate: bool = True, spatial_gate: bool = True) -> None:
        super().__init__()
        if gates not in GATE_ORDERS:
            raise ValueError(f"gates {gates!r}: expected one of {', '.join(GATE_ORDERS)}")
        self.parallel = gates == "parallel"
        order = ["channel", "spatial"] if self.parallel else gates.split("+")
        on = [g for g in order if {"channel": channel_gate, "spatial": spatial_gate}[g]]
        self.channel_gate = ChannelGate(channels, reduction, pooling) if "channel" in on else nn.Identity()
        self.spatial_gate = SpatialGate(kernel_size) if "spatial" in on else nn.Identity()
        self.sequence = [getattr(self, f"{gate}_gate") for gate in on]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.parallel and len(self.sequence) == 2:
            return x * self.channel_gate.attention(x) * self.spatial_gate.attention(x)
        for gate in self.sequence:
            x = gate(x)
        return x


def official_cbam(channels: int, **options) -> CBAM:
    """CBAM as the official ResNet-CBAM builds it: the spatial gate's BN starts at zero (gate 0.5)."""
    module = CBAM(channels, **options)
    if isinstance(module.spatial_gate, SpatialGate):
        nn.init.zeros_(module.spatial_gate.bn.weight)
    return module
