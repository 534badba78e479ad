"""Every model's checkpoint carries its constructor arguments, and `Model.from_checkpoint` rebuilds it exactly."""

import pytest
import torch

from gsmoe_lib import runs
from gsmoe_lib.models.experts import Experts
from gsmoe_lib.models.gate import Gate
from gsmoe_lib.models.sultani import SultaniMLP
from gsmoe_lib.models.urdmu import URDMU

# Non-default values for the arguments the old checkpoints left out (n_heads, ffn_hidden, mlp_hidden, ...).
MODELS = [
    (Experts, dict(n_experts=3, feature_dim=8, d_model=16, n_heads=2, ffn_hidden=24, mlp_hidden=12, dropout=0.2),
     lambda: (torch.rand(2, 5, 8),)),
    (Gate, dict(n_experts=3, feature_dim=8, d_model=16, n_heads=2, ffn_hidden=20, mlp_hidden=(12, 8, 4), dropout=0.0,
                use_features=True, fusion="sum", expert_input="probs"),
     lambda: (torch.rand(2, 5, 3), torch.rand(2, 5, 8))),
    (URDMU, dict(input_dim=6, dim=8, depth=1, heads=2, dim_head=4, mlp_dim=12, dropout=0.1, memory_slots=5,
                 head_hidden=4), lambda: (torch.rand(2, 40, 6),)),
    (SultaniMLP, dict(input_dim=6, hidden=10, bottleneck=4, dropout=0.3), lambda: (torch.rand(2, 5, 6),)),
]


def _scores(out):
    return out.scores if hasattr(out, "scores") else out


@pytest.mark.parametrize("cls, args, inputs", MODELS, ids=[m[0].__name__ for m in MODELS])
def test_from_checkpoint_rebuilds_the_model_with_every_constructor_argument(cls, args, inputs, tmp_path):
    torch.manual_seed(0)
    model = cls(**args).eval()
    runs.save_checkpoint(tmp_path / "ck.pt", model.checkpoint_payload(), kind="m")
    payload = runs.load_checkpoint(tmp_path / "ck.pt", kind="m")  # weights_only: model_args are plain values
    again = cls.from_checkpoint(payload).eval()
    assert again.model_args == model.model_args == {**args, **({"mlp_hidden": [12, 8, 4]} if cls is Gate else {})}
    x = inputs()
    with torch.no_grad():
        torch.testing.assert_close(_scores(again(*x)), _scores(model(*x)))


def test_checkpoints_written_before_model_args_still_load():
    experts = Experts(2, 8, d_model=16, dropout=0.0)  # the old payload's sizes, every other argument the default
    old = {"state_dict": experts.state_dict(), "names": ["a", "b"], "n_experts": 2, "feature_dim": 8, "d_model": 16,
           "dropout": 0.0}
    assert Experts.from_checkpoint(old).model_args == experts.model_args
    gate = Gate(2, 8, d_model=16, use_features=False, dropout=0.1, expert_input="probs")
    old_gate = {"state_dict": gate.state_dict(), "n_experts": 2, "feature_dim": 8, "d_model": 16,
                "use_features": False, "dropout": 0.1}  # before "expert_input": the gate read probabilities
    assert Gate.from_checkpoint(old_gate).model_args["expert_input"] == "probs"
    assert URDMU.from_checkpoint({"state_dict": URDMU(input_dim=6).state_dict(), "input_dim": 6}).input_dim == 6
    with pytest.raises(ValueError, match="model_args.*missing.*feature_dim"):
        Experts.from_checkpoint({"state_dict": {}, "n_experts": 2, "d_model": 16, "dropout": 0.0})
