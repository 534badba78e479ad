import math

import pytest
import torch

from gsmoe_lib.losses import urdmu_loss
from gsmoe_lib.models.urdmu import URDMU, URDMUOutput, load_released, local_kernel

# The published contract: the keys and shapes of a released UR-DMU checkpoint (REFERENCE.md §2).
RELEASED_SHAPES = {
    "embedding.conv_1.0.weight": (512, 1024, 3),
    "embedding.conv_1.0.bias": (512,),
    "cls_head.mlp.0.weight": (128, 1024),
    "cls_head.mlp.0.bias": (128,),
    "cls_head.mlp.2.weight": (1, 128),
    "cls_head.mlp.2.bias": (1,),
    "Amemory.memory_block": (60, 512),
    "Nmemory.memory_block": (60, 512),
    "encoder_mu.0.weight": (512, 512),
    "encoder_mu.0.bias": (512,),
    "encoder_var.0.weight": (512, 512),
    "encoder_var.0.bias": (512,),
}
for _layer in (0, 1):
    RELEASED_SHAPES.update(
        {
            f"selfatt.layers.{_layer}.0.norm.weight": (512,),
            f"selfatt.layers.{_layer}.0.norm.bias": (512,),
            f"selfatt.layers.{_layer}.0.fn.to_qkv.weight": (2048, 512),
            f"selfatt.layers.{_layer}.0.fn.to_out.0.weight": (512, 1024),
            f"selfatt.layers.{_layer}.0.fn.to_out.0.bias": (512,),
            f"selfatt.layers.{_layer}.1.norm.weight": (512,),
            f"selfatt.layers.{_layer}.1.norm.bias": (512,),
            f"selfatt.layers.{_layer}.1.fn.net.0.weight": (512, 512),
            f"selfatt.layers.{_layer}.1.fn.net.0.bias": (512,),
            f"selfatt.layers.{_layer}.1.fn.net.3.weight": (512, 512),
            f"selfatt.layers.{_layer}.1.fn.net.3.bias": (512,),
        }
    )

TINY = dict(input_dim=6, dim=8, depth=2, heads=2, dim_head=4, mlp_dim=8, memory_slots=20, head_hidden=5)


def tiny_model(seed: int = 0, **overrides) -> URDMU:
    torch.manual_seed(seed)
    return URDMU(**{**TINY, **overrides}).double()


# ---- a straightforward reference of the evaluation equations: loops over time, no SDPA ----


def reference_eval(model: URDMU, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One crop x [T, D] -> (scores [T], h [T, F]) computed position by position in float64."""
    sd = {k: v.double() for k, v in model.state_dict().items()}
    x = x.double()
    T = x.shape[0]
    heads = model.selfatt.layers[0][0].fn.heads
    dh = model.selfatt.layers[0][0].fn.dim_head

    W, b = sd["embedding.conv_1.0.weight"], sd["embedding.conv_1.0.bias"]
    pad = torch.cat([torch.zeros(1, x.shape[1], dtype=x.dtype), x, torch.zeros(1, x.shape[1], dtype=x.dtype)])
    z = [torch.relu(b + sum(W[:, :, j] @ pad[t + j] for j in range(3))) for t in range(T)]

    def layer_norm(v, p):
        return (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + 1e-5) * sd[p + ".weight"] + sd[p + ".bias"]

    K = [[math.exp(-abs(i - j) / math.e) for j in range(T)] for i in range(T)]
    A = [[K[i][j] / sum(K[j]) for j in range(T)] for i in range(T)]
    for layer in range(len(model.selfatt.layers)):
        p = f"selfatt.layers.{layer}"
        y = [layer_norm(v, f"{p}.0.norm") for v in z]
        qkvt = [sd[f"{p}.0.fn.to_qkv.weight"] @ v for v in y]
        inner = heads * dh
        out = []
        for i in range(T):
            per_head = []
            for h in range(heads):
                sl = slice(h * dh, (h + 1) * dh)
                q = qkvt[i][0 * inner:][sl]
                logits = torch.stack([q @ qkvt[j][1 * inner:][sl] / math.sqrt(dh) for j in range(T)])
                w = torch.exp(logits - logits.max())
                w = w / w.sum()
                glob = sum(w[j] * qkvt[j][2 * inner:][sl] for j in range(T))
                loc = sum(A[i][j] * qkvt[j][3 * inner:][sl] for j in range(T))
                per_head += [glob, loc]
            out.append(sd[f"{p}.0.fn.to_out.0.weight"] @ torch.cat(per_head) + sd[f"{p}.0.fn.to_out.0.bias"])
        z = [z[i] + out[i] for i in range(T)]
        y = [layer_norm(v, f"{p}.1.norm") for v in z]
        gelu = [torch.nn.functional.gelu(sd[f"{p}.1.fn.net.0.weight"] @ v + sd[f"{p}.1.fn.net.0.bias"]) for v in y]
        z = [z[i] + sd[f"{p}.1.fn.net.3.weight"] @ gelu[i] + sd[f"{p}.1.fn.net.3.bias"] for i in range(T)]

    scores, feats = [], []
    for v in z:
        aug = torch.zeros_like(v)
        for mem in ("Amemory", "Nmemory"):
            M = sd[f"{mem}.memory_block"]
            memory_aug = sum(torch.sigmoid(v @ M[m] / math.sqrt(v.numel())) * M[m] for m in range(M.shape[0]))
            aug = aug + sd["encoder_mu.0.weight"] @ memory_aug + sd["encoder_mu.0.bias"]
        h = torch.cat([v, aug])
        hidden = torch.relu(sd["cls_head.mlp.0.weight"] @ h + sd["cls_head.mlp.0.bias"])
        scores.append(torch.sigmoid(sd["cls_head.mlp.2.weight"] @ hidden + sd["cls_head.mlp.2.bias"])[0])
        feats.append(h)
    return torch.stack(scores), torch.stack(feats)


# ---- architecture contract ----


def test_state_dict_matches_released_keys_and_parameter_count():
    model = URDMU()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == RELEASED_SHAPES
    assert sum(p.numel() for p in model.parameters()) == 6_492_929
    assert model.feature_dim == 1024
    assert URDMU(input_dim=2048).state_dict()["embedding.conv_1.0.weight"].shape == (512, 2048, 3)


def test_local_kernel_hand_values_t3():
    a = math.exp(-1 / math.e)  # 0.69220...
    s_end, s_mid = 1 + a + a * a, 1 + 2 * a  # sums of the rows (= columns) of K at the ends and the middle
    expected = torch.tensor(
        [
            [1 / s_end, a / s_mid, a * a / s_end],
            [a / s_end, 1 / s_mid, a / s_end],
            [a * a / s_end, a / s_mid, 1 / s_end],
        ]
    )
    A = local_kernel(3)
    torch.testing.assert_close(A, expected)
    assert A[0, 0].item() == pytest.approx(0.46054, abs=1e-5)
    torch.testing.assert_close(A.sum(0), torch.ones(3))  # UR-DMU's normalisation: columns sum to 1
    assert local_kernel(3) is A  # cached
    assert local_kernel(3, dtype=torch.float64).dtype == torch.float64


# ---- evaluation ----


def test_eval_matches_reference_tiny():
    model = tiny_model().eval()
    x = torch.randn(2, 5, TINY["input_dim"], dtype=torch.float64)
    out = model(x)
    assert isinstance(out, URDMUOutput) and out.A_att is None and out.kl_mu is None
    for b in range(2):
        scores, feats = reference_eval(model, x[b])
        torch.testing.assert_close(out.scores[b], scores)
        torch.testing.assert_close(out.features[b], feats)


def test_eval_matches_reference_default_size():
    torch.manual_seed(1)
    model = URDMU().double().eval()
    x = torch.randn(1, 4, 1024, dtype=torch.float64)
    scores, feats = reference_eval(model, x[0])
    out = model(x)
    torch.testing.assert_close(out.scores[0], scores)
    torch.testing.assert_close(out.features[0], feats)


def test_crops_equal_the_average_of_per_crop_outputs():
    model = tiny_model().eval()
    x = torch.randn(3, 4, 7, TINY["input_dim"], dtype=torch.float64)  # [B, C, T, D]
    out = model(x)
    per_crop = [model(x[:, c]) for c in range(4)]
    torch.testing.assert_close(out.scores, torch.stack([o.scores for o in per_crop]).mean(0))
    torch.testing.assert_close(out.features, torch.stack([o.features for o in per_crop]).mean(0))
    assert out.scores.shape == (3, 7) and out.features.shape == (3, 7, model.feature_dim)
    assert ((out.scores > 0) & (out.scores < 1)).all()


def test_bad_inputs_raise():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"\[B, T, 6\]"):
        model(torch.randn(2, 5, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match="even batch"):
        model.train()(torch.randn(3, 5, 6, dtype=torch.float64))


def test_bf16_autocast_runs():
    torch.manual_seed(0)
    model = URDMU(**TINY).eval()
    x = torch.randn(2, 9, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    torch.testing.assert_close(out.scores.float(), model(x).scores, atol=0.05, rtol=0)


def test_scoring_under_inference_mode_then_training_works():
    """A local kernel first built while scoring (inference mode) is an ordinary tensor that training can save
    for backward: the training step after it gives a finite loss and a gradient to every parameter."""
    model = tiny_model()
    T = 11  # a length no other test uses: the kernel is new
    x = torch.randn(2, T, 6, dtype=torch.float64)
    with torch.inference_mode():
        scored = model.eval()(x).scores
    assert scored.is_inference()  # the scoring pass really ran under inference mode
    assert not local_kernel(T, "cpu", torch.float64).is_inference()  # ... but the cached kernel did not
    loss, _ = urdmu_loss(model.train()(x), torch.tensor([0, 1]))
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


# ---- training ----


def test_training_outputs_shapes_and_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = URDMU().train()
    x = torch.randn(4, 2, 32, 1024)  # 2 normal + 2 abnormal videos, 2 crops each
    out = model(x)
    assert out.scores.shape == (4, 32) and out.features.shape == (4, 32, 1024)
    for name in ("A_att", "N_att", "A_Natt", "N_Aatt"):
        assert getattr(out, name).shape == (2, 32)
    for name in ("triplet_anchor", "triplet_positive", "triplet_negative"):
        assert getattr(out, name).shape == (2, 512)
    assert out.kl_mu.shape == out.kl_logvar.shape == (4, 32, 512)
    assert out.abnormal_aug_norm.shape == out.normal_aug_norm.shape == (2,)
    loss, parts = urdmu_loss(out, torch.tensor([0, 0, 1, 1]))
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in parts.values())
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_training_without_noise_and_dropout_scores_like_eval():
    model = tiny_model(dropout=0.0)
    with torch.no_grad():  # logvar = -1e4: the reparameterised sample is exactly mu
        model.encoder_var[0].weight.zero_()
        model.encoder_var[0].bias.fill_(-1e4)
    x = torch.randn(4, 2, 9, 6, dtype=torch.float64)
    train_out, eval_out = model.train()(x), model.eval()(x)
    torch.testing.assert_close(train_out.scores, eval_out.scores)
    torch.testing.assert_close(train_out.features, eval_out.features)


def test_training_extras_follow_the_half_batch_and_crop_bookkeeping():
    model = tiny_model(dropout=0.0).train()
    torch.manual_seed(3)
    x = torch.randn(4, 2, 9, 6, dtype=torch.float64)  # videos 0, 1 normal; 2, 3 abnormal
    out = model(x)
    k = 9 // 16 + 1
    with torch.no_grad():
        z = model.selfatt(model.embedding(x.reshape(8, 9, 6))).view(4, 2, 9, -1)  # [B, C, T, dim]

        def mem_att(mem, v):  # v [T, dim] -> [T]
            att = torch.sigmoid(v @ mem.memory_block.T / math.sqrt(v.shape[-1]))
            return att.topk(20 // 16 + 1, dim=-1).values.mean(-1)

        def topk_x(att, v):
            return v[att.topk(k).indices].mean(0)

        for i in range(2):
            n, a = i, i + 2  # i-th normal video, i-th abnormal video
            for got, mem, v in ((out.N_att, model.Nmemory, n), (out.A_Natt, model.Amemory, n),
                                (out.A_att, model.Amemory, a), (out.N_Aatt, model.Nmemory, a)):
                torch.testing.assert_close(got[i], torch.stack([mem_att(mem, z[v, c]) for c in range(2)]).mean(0))
            anchor = torch.stack([topk_x(mem_att(model.Nmemory, z[n, c]), z[n, c]) for c in range(2)]).mean(0)
            positive = torch.stack([topk_x(mem_att(model.Nmemory, z[a, c]), z[a, c]) for c in range(2)]).mean(0)
            negative = torch.stack([topk_x(mem_att(model.Amemory, z[a, c]), z[a, c]) for c in range(2)]).mean(0)
            torch.testing.assert_close(out.triplet_anchor[i], anchor)
            torch.testing.assert_close(out.triplet_positive[i], positive)
            torch.testing.assert_close(out.triplet_negative[i], negative)
            abn_aug = []
            for c in range(2):
                _, aug = model.Amemory(z[a, c][None])
                abn_aug.append(topk_x(mem_att(model.Amemory, z[a, c]), model.encoder_mu(aug[0])))
            torch.testing.assert_close(out.abnormal_aug_norm[i], torch.stack(abn_aug).mean(0).norm())
        # KL inputs: the normal videos' crops, normal memory, in [B/2 * C, T, dim] order
        _, n_aug = model.Nmemory(z[:2].reshape(4, 9, -1))
        torch.testing.assert_close(out.kl_mu, model.encoder_mu(n_aug))
        torch.testing.assert_close(out.kl_logvar, model.encoder_var(n_aug))


def test_training_extras_can_be_switched_off():
    model = tiny_model().train()
    out = model(torch.randn(3, 5, 6, dtype=torch.float64), training_extras=False)  # odd batch is fine here
    assert out.A_att is None and out.scores.shape == (3, 5)


# ---- released checkpoints ----


def test_load_released_roundtrip_and_input_dim_inference(tmp_path):
    torch.manual_seed(0)
    model = URDMU(input_dim=2048).eval()  # RTFM features are 2048-d
    path = tmp_path / "ucf_trans_2022.pkl"
    torch.save(model.state_dict(), path)
    loaded = load_released(path)
    assert loaded.input_dim == 2048 and not loaded.training
    x = torch.randn(1, 6, 2048)
    torch.testing.assert_close(loaded(x).scores, model(x).scores)
    with pytest.raises(ValueError, match="input_dim 2048"):
        load_released(path, input_dim=1024)


def test_load_released_names_the_file_and_the_wrong_keys(tmp_path):
    state = URDMU().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["Nmemory.memory_block"]
    path = tmp_path / "broken.pkl"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"broken\.pkl.*Nmemory\.memory_block.*extra\.weight"):
        load_released(path)
    torch.save({"model": URDMU().state_dict()}, path)
    with pytest.raises(ValueError, match="broken.pkl"):
        load_released(path)


def test_local_kernels_are_built_on_the_device_of_the_features():
    """No tensor is made on the host and copied over (on a GPU, each copy would synchronise once per video)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from gsmoe_lib.models import urdmu

    class HostTensors(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor) and out.device.type == "cpu":
                self.ops.append(str(func))
            return out

    urdmu._cached_local_kernel.cache_clear()
    urdmu._cached_band_blocks.cache_clear()
    with HostTensors() as mode:
        dense = urdmu.local_mix(torch.empty(2, 9, 4, device="meta"))
        banded = urdmu.local_mix(torch.empty(2, urdmu.DENSE_MAX_T + 5, 4, device="meta"))
    assert dense.device.type == banded.device.type == "meta"
    assert mode.ops == []
    urdmu._cached_local_kernel.cache_clear()
    urdmu._cached_band_blocks.cache_clear()
