"""`gsmoe bench speed --small`: the benchmark runs end to end and writes a complete record. No timing assertions."""

import json
import sys

import numpy as np
import pytest
import torch

from gsmoe_lib import cli
from gsmoe_lib.bench import breakdown, memory, scoring, speed, steps
from gsmoe_lib.bench.meters import StepTimes
from gsmoe_lib.bench.sizes import BenchSizes, ucf_test_lengths

TRAINING = ("encoder", "tgs", "experts", "gate")
SCORING = ("score_urdmu_per_crop", "score_urdmu_all_crops", "score_gsmoe", "score_gsmoe_mean")
MEMORY = tuple(f"memory_{m}_{s}" for m in memory.MEMORY_MODES for s in memory.MEMORY_SETS)


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    """One small CPU run through the command line (single-threaded: the test machine is shared)."""
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    try:
        status = cli.main(["bench", "speed", "--small", "--steps", "2", "--warmup", "1", "--threads", "1", "--json", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert status == 0
    return json.loads(out.read_text())


def test_json_has_every_measurement_with_positive_times(record):
    results = record["results"]
    assert set(results) == {*TRAINING, "tgs_pseudo_labels", *SCORING, *MEMORY, "breakdown"}
    for name in TRAINING:
        r = results[name]
        assert r["steps"] == 2
        assert 0 < r["step_s_min"] <= r["step_s_median"] and r["step_s"] > 0
        assert r["videos_per_s"] > 0 and r["samples_per_step"] > 0  # the arithmetic: test_step_record_of_...
        assert r["host_peak_mb"] > 0 and r["device_peak_mb"] is None  # CPU run: no device memory
    small = BenchSizes.small()
    assert results["experts"]["samples_per_step"] == small.n_experts * (
        small.expert_batch_normal + small.expert_batch_abnormal)
    for name in SCORING:
        r = results[name]
        assert r["total_s"] > 0 and r["cpu_s"] > 0
        assert r["snippets"] == sum(small.test_lengths) and r["videos"] == len(small.test_lengths)
        assert r["snippets_per_s"] == pytest.approx(r["snippets"] / r["total_s"])
    assert results["score_gsmoe"]["vs_urdmu_all_crops"] > 0 and results["score_gsmoe_mean"]["vs_urdmu_all_crops"] > 0
    assert results["score_gsmoe"]["interleaved"] and results["score_gsmoe"]["features"] == "mmap"  # CPU defaults
    pseudo = results["tgs_pseudo_labels"]
    assert pseudo["tgs_batch"]["curves"] == small.batch_normal + small.batch_abnormal
    assert pseudo["tgs_batch"]["call_s"] > 0 and pseudo["fraction_of_tgs_step"] > 0


def test_step_record_of_a_hand_timed_stage():
    # two steps of 0.5 s and 1.5 s on 8 samples: mean 1 s, so 8 videos per second; CPU time is passed through
    r = steps.step_record(StepTimes([0.5, 1.5], cpu=0.25), 8, torch.device("cpu"), n_experts=3)
    assert (r["step_s"], r["step_s_median"], r["step_s_min"], r["steps"]) == (1.0, 1.0, 0.5, 2)
    assert (r["videos_per_s"], r["step_cpu_s"], r["n_experts"]) == (8.0, 0.25, 3)
    assert r["device_peak_mb"] is None and r["host_peak_mb"] > 0


def test_memory_stage_measures_each_mode_in_its_own_process(record):
    results, small = record["results"], BenchSizes.small()
    for mode in memory.MEMORY_MODES:
        whole, longest = results[f"memory_{mode}_test_set"], results[f"memory_{mode}_longest_video"]
        assert (whole["videos"], whole["snippets"]) == (len(small.test_lengths), sum(small.test_lengths))
        assert (longest["videos"], longest["max_T"]) == (1, max(small.test_lengths))
        for r in (whole, longest):
            assert r["mode"] == mode and r["seconds"] > 0 and r["device_peak_mb"] is None
            assert r["release_memory"] is True  # as evaluate.score_dataset scores (--keep-freed-memory: False)
            assert 0 < r["baseline_mb"] <= r["peak_mb"] and r["beyond_mb"] == pytest.approx(r["peak_mb"] - r["baseline_mb"])
            # a fresh process, its peak counted from the baseline (a child's getrusage would start at the
            # size of its parent, this test process)
            assert r["peak_mb"] < 4000
            if sys.platform.startswith("linux"):
                assert r["peak_source"] == "VmHWM" and r["beyond_mb"] < 500
    assert record["settings"]["release_memory"] is True
    assert whole["features_mb"] == pytest.approx(sum(small.test_lengths) * small.crops * small.input_dim * 4 / 2**20)


def test_memory_mapped_test_set_reads_one_video_at_a_time(tmp_path):
    sizes = BenchSizes.small()
    ts = scoring.TestSet.synthetic(sizes, torch.device("cpu"), torch.Generator().manual_seed(0), "mmap", tmp_path)
    assert ts.lengths == sizes.test_lengths and len(list(tmp_path.glob("*.npy"))) == len(sizes.test_lengths)
    x = ts.load(2)
    assert tuple(x.shape) == (sizes.crops, sizes.test_lengths[2], sizes.input_dim) and x.dtype == torch.float32
    assert not isinstance(x.numpy(), np.memmap) and x.numpy().flags.writeable  # a copy, the map is closed
    again = scoring.TestSet.open(tmp_path, videos=[2])
    assert again.lengths == (sizes.test_lengths[2],) and torch.equal(again.load(0), x)
    ts.close()
    assert tmp_path.exists()  # a folder the caller gave is the caller's to remove


def test_interleaved_scoring_gives_the_sequential_scores():
    videos = [torch.randn(2, t, 3) for t in (5, 1, 7)]
    functions = {"a": lambda x: x.mean((0, 2)), "b": lambda x: x[0, :, 0] * 3}
    timed = scoring.score_interleaved(functions, videos)
    for mode, fn in functions.items():
        sequential, _ = scoring.score_test_set(fn, videos, torch.device("cpu"))
        assert timed[mode]["total_s"] > 0 and timed[mode]["cpu_s"] >= 0
        for a, b in zip(timed[mode]["scores"], sequential):
            np.testing.assert_array_equal(a, b)


def test_record_names_machine_versions_and_settings(record):
    env = record["environment"]
    for key in ("torch", "python", "cpu", "cpu_count", "gpu", "platform"):
        assert key in env
    assert env["torch_threads"] == 1
    s = record["settings"]
    assert (s["device"], s["amp"], s["tf32"], s["small"], s["steps"], s["warmup"]) == ("cpu", "none", False, True, 2, 1)
    assert s["stages"] == list(speed.STAGES)
    assert len(record["load_average_before"]) == 3 and len(record["load_average_after"]) == 3


def test_ucf_test_lengths_are_the_real_test_set():
    lengths = ucf_test_lengths()
    assert len(lengths) == 290
    assert sum(lengths) == 69364  # floor(frames / 16) summed over the annotation file
    assert lengths[:2] == (8640 // 16, 155 // 16)  # Arson022, RoadAccidents021: the file's first lines
    assert max(lengths) == 6749


def test_scoring_keeps_order_and_lengths():
    videos = [torch.full((2, t, 3), float(i)) for i, t in enumerate((5, 1, 7))]  # [C, T, D], value = index
    scores, seconds = scoring.score_test_set(lambda x: x[0, :, 0] * 2, videos, torch.device("cpu"))
    assert seconds >= 0
    assert [len(s) for s in scores] == [5, 1, 7]
    for i, s in enumerate(scores):
        np.testing.assert_array_equal(s, np.full(len(s), 2.0 * i, dtype=np.float32))


def test_unknown_stage_and_bad_amp_are_clear_errors(capsys):
    with pytest.raises(ValueError, match="unknown benchmark stages"):
        speed.run_benchmark(stages=("encoder", "decoder"), small=True)
    with pytest.raises(ValueError, match="amp"):
        speed.run_benchmark(amp="fp16", small=True)
    assert cli.main(["bench", "speed", "--small", "--stages", "nope"]) == 2
    assert "unknown benchmark stages" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown scoring modes"):
        speed.run_benchmark(stages=("score",), small=True, score_modes=("gsmoe", "fastest"))


def test_score_modes_pick_what_is_timed():
    record = speed.run_benchmark(stages=("score",), small=True, steps=1, warmup=0, score_modes=("gsmoe_mean",))
    assert set(record["results"]) == {"score_gsmoe_mean"}
    assert record["settings"]["score_modes"] == ["gsmoe_mean"]


@pytest.mark.parametrize("T", [257, 300, 1000])
def test_banded_local_branch_matches_the_dense_kernel(T):
    """The long-video fast path of UR-DMU's local attention (models.urdmu.local_mix) equals A @ t."""
    from gsmoe_lib.models.urdmu import DENSE_MAX_T, local_kernel, local_mix

    assert T > DENSE_MAX_T  # the banded path is the one under test
    t = torch.randn(2, T, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(T))
    torch.testing.assert_close(local_mix(t), local_kernel(T, dtype=torch.float64) @ t, rtol=0, atol=1e-9)


def test_breakdown_counts_every_operation_of_the_experts(record):
    # The experts' count must include their attention (torch's counter misses the CPU's fused kernel): per
    # crop, 2 x the weights' multiply-adds per snippet and 4 x T^2 x d_model per expert.
    small = BenchSizes.small()
    ex = small.experts()
    weights = (ex.feature_dim * ex.d_model + 3 * ex.d_model**2 + ex.d_model**2 + 2 * ex.d_model * ex.ffn_hidden
               + ex.d_model * ex.mlp_hidden + ex.mlp_hidden)
    for T in breakdown.SMALL_LENGTHS:
        row = record["results"]["breakdown"][f"T{T}"]
        expected = row["crops"] * ex.n_experts * (2 * T * weights + 4 * T * T * ex.d_model)
        assert row["experts"]["gflop"] * 1e9 == pytest.approx(expected, rel=1e-9)
        assert row["crops"] == min(small.crops, max(1, 1024 // T))
        for part in breakdown.PARTS:
            assert row[part]["wall_s"] > 0 and row[part]["gflop"] > 0
        assert row["gsmoe_vs_encoder_flop"] > 1 and row["gsmoe_vs_encoder_time"] > 1


def test_memory_probe_releases_freed_memory_unless_asked_to_keep_it(tmp_path, monkeypatch):
    sizes = BenchSizes.small()
    scoring.TestSet.synthetic(sizes, torch.device("cpu"), torch.Generator().manual_seed(0), "mmap", tmp_path)
    calls = []
    monkeypatch.setattr(scoring, "release_freed_memory", lambda: calls.append(1) or True)
    spec = {"mode": "gsmoe", "folder": str(tmp_path), "videos": None, "small": True, "device": "cpu"}
    for release, expected in ((True, len(sizes.test_lengths)), (False, 0)):
        calls.clear()
        r = memory.memory_probe(spec | {"release_memory": release})
        assert r["release_memory"] is release and len(calls) == expected
