"""torch.optim's SGD and AdamW as a trial steps them, without importing torch._dynamo.

torch.optim imports torch._dynamo (and with it sympy and triton) so that torch.compile can trace around
an optimizer: on the first `add_param_group`, which the constructor calls, and on every `step`. A trial
compiles nothing, yet the import cost each worker 160 MB of a tiny trial's 1.12 GB (measured). Here
the same optimizers run the same arithmetic, their steps bit-identical to torch's (tests/test_optim.py),
without it:

- the four methods torch wraps in `torch._disable_dynamo` look first for the disabled form they cached
  on themselves (`__dynamo_disable`); told it is the method itself, they call the method as it is, which
  is what the disabled form does when nothing compiles;
- `step` runs torch's own step, unwrapped, under the grad mode torch's wrapper sets, less the wrapper's
  `torch._dynamo.graph_break()`, a no-op outside torch.compile (the step hooks still run: torch wraps
  each optimizer class's `step` in them when it is first built).

A torch whose optimizers are wrapped otherwise is used as it is: it imports torch._dynamo again, which
costs memory, not correctness (tests/test_architecture.py notices).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable

import torch

from ablation.core.schema import TrainSpec

# The Optimizer methods torch wraps in `torch._disable_dynamo` (torch/optim/optimizer.py).
_WRAPPED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def optimizer(params: Iterable[torch.nn.Parameter], t: TrainSpec) -> torch.optim.Optimizer:
    """The spec's optimizer (`train.optimizer`) over `params`."""
    _cache_disabled_forms()
    if t.optimizer == "sgd":
        return SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    return AdamW(params, lr=t.lr, weight_decay=t.weight_decay)


class _PlainStep:
    """`step` as torch's own, unwrapped (`_raw_step`), under the grad mode torch's wrapper sets."""

    _raw_step: staticmethod

    def step(self, closure=None):
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return self._raw_step(self, closure)


class SGD(_PlainStep, torch.optim.SGD):
    """torch.optim.SGD, stepped without torch._dynamo."""

    _raw_step = staticmethod(inspect.unwrap(torch.optim.SGD.step))


class AdamW(_PlainStep, torch.optim.AdamW):
    """torch.optim.AdamW, stepped without torch._dynamo."""

    _raw_step = staticmethod(inspect.unwrap(torch.optim.AdamW.step))


def _cache_disabled_forms() -> None:
    for name in _WRAPPED:
        method = getattr(torch.optim.Optimizer, name, None)
        plain = getattr(method, "__wrapped__", None)
        reads_cache = "__dynamo_disable" in getattr(getattr(method, "__code__", None), "co_consts", ())
        if plain is not None and reads_cache and not hasattr(plain, "__dynamo_disable"):
            setattr(plain, "__dynamo_disable", plain)
