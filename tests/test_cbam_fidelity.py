"""CBAM against its paper's equations (Woo et al. 2018, eqs. 1-3), written out in plain tensor code."""

import torch
import torch.nn.functional as F

from ablation.models.cbam import CBAM


def cbam_from_the_equations(x, w0, b0, w1, b1, conv, bn_weight, bn_bias, bn_mean, bn_var, eps):
    # Eq. 2: Mc(F) = sigmoid(W1(W0(AvgPool(F))) + W1(W0(MaxPool(F)))), ReLU after W0.
    def mlp(v):
        return torch.relu(v @ w0.T + b0) @ w1.T + b1

    channel = torch.sigmoid(mlp(x.mean(dim=(2, 3))) + mlp(x.amax(dim=(2, 3))))
    x = x * channel[:, :, None, None]  # F' = Mc(F) * F
    # Eq. 3: Ms(F') = sigmoid(f7x7([pooled maps])), with the official code's BN after the conv and its
    # channel order (max, then mean); the paper writes the pair the other way round.
    pooled = torch.stack([x.amax(dim=1), x.mean(dim=1)], dim=1)
    z = F.conv2d(pooled, conv, padding=conv.shape[-1] // 2)
    z = (z - bn_mean) / torch.sqrt(bn_var + eps) * bn_weight + bn_bias
    return x * torch.sigmoid(z)  # F'' = Ms(F') * F'


def test_the_module_computes_the_papers_equations():
    torch.manual_seed(0)
    module = CBAM(64, reduction=8).eval()
    with torch.no_grad():  # non-trivial BN statistics, so the check covers them too
        bn = module.spatial_gate.bn
        bn.running_mean.fill_(0.3), bn.running_var.fill_(2.0), bn.weight.fill_(1.5), bn.bias.fill_(-0.2)
    x = torch.randn(4, 64, 9, 11)
    mlp = module.channel_gate.mlp
    expected = cbam_from_the_equations(
        x, mlp[1].weight, mlp[1].bias, mlp[3].weight, mlp[3].bias, module.spatial_gate.conv.weight,
        bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps,
    )
    torch.testing.assert_close(module(x), expected, rtol=0, atol=1e-6)
