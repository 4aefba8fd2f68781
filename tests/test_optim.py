"""ablation.optim: torch's SGD and AdamW, stepped without importing torch._dynamo, to the same bits."""

import subprocess
import sys

import pytest
import torch

from ablation import optim
from ablation.core.schema import TrainSpec


def trajectory(make, steps: int = 6) -> list[torch.Tensor]:
    """A small convnet's parameters after each of `steps` steps (with a cosine schedule), from one seed."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    opt = make(model.parameters())
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    images, labels = torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))
    out = []
    for step in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        opt.step()
        schedule.step()
        if step == 2:  # a checkpoint's round trip, as a resumed trial makes it
            opt.load_state_dict(opt.state_dict())
        out.append(torch.cat([p.detach().flatten().clone() for p in model.parameters()]))
    return out


@pytest.mark.parametrize("spec", [TrainSpec(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4),
                                  TrainSpec(optimizer="adamw", lr=1e-2, weight_decay=0.05)])
def test_each_step_equals_torchs_own_optimizer_to_the_bit(spec):
    torchs = torch.optim.SGD if spec.optimizer == "sgd" else torch.optim.AdamW
    kwargs = dict(lr=spec.lr, weight_decay=spec.weight_decay) | ({"momentum": spec.momentum} if spec.optimizer == "sgd"
                                                                 else {})
    ours = trajectory(lambda params: optim.optimizer(params, spec))
    theirs = trajectory(lambda params: torchs(params, **kwargs))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert not torch.equal(ours[0], ours[-1])  # it did train


def test_step_hooks_still_run_and_the_step_leaves_grad_mode_as_it_was():
    model = torch.nn.Linear(3, 2)
    opt = optim.optimizer(model.parameters(), TrainSpec(optimizer="adamw"))
    seen = []
    opt.register_step_pre_hook(lambda *_: seen.append("pre"))
    opt.register_step_post_hook(lambda *_: seen.append("post"))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    assert seen == ["pre", "post"] and torch.is_grad_enabled()


def test_training_with_them_never_imports_torch_dynamo():
    """torch.optim's own import it (and sympy and triton, 160 MB of a tiny trial's worker) on their
    constructor's add_param_group and on each step. Importing it is refused here rather than done, which
    takes seconds: torch's own step then fails, so the check can fail."""
    code = """
import sys, torch

class Refused:
    def find_spec(self, name, path=None, target=None):
        if name == "torch._dynamo":
            raise ImportError("torch._dynamo imported")

sys.meta_path.insert(0, Refused())
from ablation import optim
from ablation.core.schema import TrainSpec
for name in ("sgd", "adamw"):
    model = torch.nn.Linear(3, 2)
    opt = optim.optimizer(model.parameters(), TrainSpec(optimizer=name))
    model(torch.randn(4, 3)).sum().backward()
    opt.step(); opt.zero_grad(); opt.load_state_dict(opt.state_dict())
assert "torch._dynamo" not in sys.modules
model = torch.nn.Linear(3, 2)
try:  # torch's own step imports it
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
except ImportError as err:
    assert "torch._dynamo imported" in str(err), err
else:
    raise AssertionError("torch's own AdamW stepped without importing torch._dynamo")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
