"""The robustness benchmark's variants (`bench.robustness`) and target checks (`bench.robustness_report`), without
training."""

import json
from pathlib import Path

import numpy as np
import pytest

from gsmoe_lib import cli
from gsmoe_lib.bench import robustness as R
from gsmoe_lib.bench import robustness_report as report
from gsmoe_lib.data import synthetic as S


def _write(root: Path, variant: R.Variant, profile: str = "tiny", seed: int | None = None, **extra) -> Path:
    """The variant's dataset at D = 16 unless `extra` says otherwise (the knobs under test do not depend on D)."""
    overrides = {**variant.synth_overrides(profile), "feature_dim": 16, **extra}
    return S.synthesize(root, profile, seed=variant.data_seed if seed is None else seed, dataset=variant.dataset,
                        **overrides)


def _counts(root: Path) -> dict:
    return json.loads((root / S.DATASET_FILE).read_text())["counts"]


@pytest.mark.parametrize("profile", ["tiny", "quick"])
def test_variant_knobs_change_the_profiles_values(profile):
    base = S.synth_config(profile)
    half = R.VARIANTS["ucf-half-saliency"].synth_config(profile)
    assert half.saliency_scale == pytest.approx(0.5 * base.saliency_scale)
    assert R.VARIANTS["ucf-distractors-2x"].synth_config(profile).distractor_rate == pytest.approx(
        2 * base.distractor_rate)
    assert R.VARIANTS["ucf-10-crops"].synth_config(profile).n_crops == 10 != base.n_crops
    lengths = R.VARIANTS["ucf-lengths"].synth_config(profile)
    assert lengths.length_scale == pytest.approx(2 * base.length_scale)
    assert lengths.max_snippets == 2 * base.max_snippets
    # every other field is the profile's: a variant changes only what it names
    for v in ("ucf-half-saliency", "ucf-reseed"):
        cfg = R.VARIANTS[v].synth_config(profile)
        changed = {k for k, x in vars(cfg).items() if x != getattr(base, k)}
        assert changed == set(R.VARIANTS[v].scale) | set(R.VARIANTS[v].set)
    assert R.VARIANTS["xd"].synth_config(profile).n_crops == 5  # XD-Violence's 5 crops


def test_every_variant_but_the_defaults_has_a_dataset_seed_of_its_own():
    seeds = [v.data_seed for v in R.VARIANTS.values() if not v.default]
    assert 0 not in seeds and len(set(seeds)) == len(seeds)
    assert {v.name for v in R.VARIANTS.values() if v.default} == {"ucf", "xd"}
    assert all(v.seeds == (5 if v.default else 3) for v in R.VARIANTS.values())
    assert len([v for v in R.VARIANTS.values() if not v.default]) >= 4  # at least four besides the defaults


def test_ten_crop_variant_writes_ten_crops(tmp_path):
    root = _write(tmp_path / "d", R.VARIANTS["ucf-10-crops"])
    lines = (root / "UCF_Train.list").read_text().split()
    crops = {}
    for line in lines:
        name, crop = Path(line).stem.rsplit("__", 1)
        crops.setdefault(name, set()).add(int(crop))
    assert crops and all(c == set(range(10)) for c in crops.values())
    first = next(iter(crops))
    assert len(list(root.rglob(f"{first}__*.npy"))) == 10


def test_another_dataset_seed_gives_other_files(tmp_path):
    a = _write(tmp_path / "a", R.VARIANTS["ucf"])
    b = _write(tmp_path / "b", R.VARIANTS["ucf-reseed"])
    assert (a / "UCF_Test.list").read_bytes() != (b / "UCF_Test.list").read_bytes()
    common = sorted({p.name for p in a.rglob("*.npy")} & {p.name for p in b.rglob("*.npy")})
    assert common  # some video names recur (the packaged lists); their features must not
    pa, pb = next(a.rglob(common[0])), next(b.rglob(common[0]))
    assert not np.array_equal(np.load(pa), np.load(pb))


def test_lengths_variant_lengthens_test_videos_and_shortens_train_videos(tmp_path):
    variant = R.VARIANTS["ucf-lengths"]
    # quick, not tiny: tiny's clip to 20-80 snippets hides the train lengths' change. The same dataset seed
    # for both, so that only the length knobs differ.
    longer = _counts(_write(tmp_path / "v", variant, "quick", feature_dim=4))
    default = _counts(_write(tmp_path / "d", R.VARIANTS["ucf"], "quick", seed=variant.data_seed, feature_dim=4))

    def mean(c, split):
        return c[split]["snippets"] / c[split]["videos"]

    assert mean(longer, "test") > 1.4 * mean(default, "test")
    assert mean(longer, "train") < 0.92 * mean(default, "train")


# ----------------------------------------------------------------------------------------------------
# Target checks on planted summaries
# ----------------------------------------------------------------------------------------------------

def _summary(auc_a: dict[str, float], ap_a: dict[str, float] | None = None, seeds=(0, 1, 2),
             collapsed: dict[str, list[int]] | None = None) -> dict:
    stages = {}
    for stage, value in auc_a.items():
        cell = {k: {"mean": value, "std": 0.5, "n": len(seeds)} for k in ("auc", "auc_abnormal", "ap", "ap_abnormal",
                                                                            "seconds")}
        if ap_a:
            cell["ap_abnormal"] = {"mean": ap_a[stage], "std": 0.5, "n": len(seeds)}
        bad = (collapsed or {}).get(stage, [])
        cell.update(collapsed_seeds=bad, collapsed=bool(bad), reasons=[f"seed {s}: test-score std 1e-05" for s in bad],
                    score_std_min=0.1, kernel_fraction_min=None)
        stages[stage] = cell
    return {"seeds": list(seeds), "stages": stages}


GOOD = {"sultani": 60.0, "encoder": 70.0, "tgs": 72.0, "experts": 71.0, "gate": 75.0}


def _by_target(checks):
    return {c["target"]: c for c in checks}


def test_targets_met_on_a_good_variant():
    checks = _by_target(report.check_targets(R.VARIANTS["ucf-half-saliency"], _summary(GOOD)))
    assert checks["no stage collapsed"]["passed"] is True
    assert checks["gate ≥ TGS ≥ baseline ≥ Sultani MIL on AUC_A"]["passed"] is True
    assert len(checks) == 2  # a UCF variant that is not the default: only these two


def test_planted_violations_are_flagged():
    # the gate below TGS
    checks = _by_target(report.check_targets(R.VARIANTS["ucf-10-crops"], _summary({**GOOD, "gate": 71.0})))
    assert checks["gate ≥ TGS ≥ baseline ≥ Sultani MIL on AUC_A"]["passed"] is False
    assert "gate 71.00 ≥ TGS 72.00" in checks["gate ≥ TGS ≥ baseline ≥ Sultani MIL on AUC_A"]["detail"]
    # the baseline below the Sultani MIL reference
    checks = _by_target(report.check_targets(R.VARIANTS["ucf-10-crops"], _summary({**GOOD, "sultani": 70.5})))
    assert checks["gate ≥ TGS ≥ baseline ≥ Sultani MIL on AUC_A"]["passed"] is False
    # a stage collapsed on one seed
    checks = _by_target(report.check_targets(R.VARIANTS["ucf-10-crops"], _summary(GOOD, collapsed={"experts": [1]})))
    assert checks["no stage collapsed"]["passed"] is False
    assert "+ experts: seed 1" in checks["no stage collapsed"]["detail"]


def test_xd_checks_ap_a_and_the_ucf_default_checks_auc_and_the_gate_std():
    ap_bad = {"sultani": 10.0, "encoder": 50.0, "tgs": 55.0, "experts": 40.0, "gate": 54.0}
    xd = _by_target(report.check_targets(R.VARIANTS["xd"], _summary(GOOD, ap_bad, seeds=range(5))))
    assert xd["gate ≥ TGS ≥ baseline on AP_A"]["passed"] is False
    assert xd["gate ≥ TGS ≥ baseline ≥ Sultani MIL on AUC_A"]["passed"] is True
    ucf = _by_target(report.check_targets(R.VARIANTS["ucf"], _summary(GOOD, seeds=range(5))))
    assert ucf["gate ≥ TGS ≥ baseline ≥ Sultani MIL on AUC"]["passed"] is True
    assert ucf["gate AUC std ≤ 1.5"]["passed"] is True
    s = _summary(GOOD, seeds=range(5))
    s["stages"]["gate"]["auc"]["std"] = 2.0
    assert _by_target(report.check_targets(R.VARIANTS["ucf"], s))["gate AUC std ≤ 1.5"]["passed"] is False


def test_missing_seeds_make_a_check_incomplete_and_a_missing_stage_is_named():
    checks = report.check_targets(R.VARIANTS["ucf"], _summary(GOOD, seeds=(0, 1)))  # 2 of 5 seeds
    assert all(c["passed"] is None and "incomplete: 2 of 5 seeds" in c["detail"] for c in checks)
    no_sultani = {k: v for k, v in GOOD.items() if k != "sultani"}
    chain = _by_target(report.check_targets(R.VARIANTS["ucf-reseed"], _summary(no_sultani)))[
        "gate ≥ TGS ≥ baseline ≥ Sultani MIL on AUC_A"]
    assert chain["passed"] is True and "Sultani MIL (reference) not run" in chain["detail"]


def test_summary_marks_a_stage_collapsed_on_any_seed_and_averages_the_seeds():
    def cell(seed, gate_auc, collapsed):
        rec = {k: gate_auc + i for i, k in enumerate(report.METRICS)}
        rec.update(seconds=1.0, score_std=1e-5 if collapsed else 0.2, kernel_fraction=0.9, collapsed=collapsed,
                   collapse_reasons=["test-score std 1.0e-05 < 0.001"] if collapsed else [])
        return {"variant": "ucf", "seed": seed, "stages": {"gate": rec}}

    s = report.summarise([cell(0, 70.0, False), cell(1, 74.0, True)], ("gate",))["ucf"]
    g = s["stages"]["gate"]
    assert g["auc"]["mean"] == pytest.approx(72.0) and g["auc"]["std"] == pytest.approx(np.std([70, 74], ddof=1))
    assert g["collapsed"] and g["collapsed_seeds"] == [1] and g["score_std_min"] == 1e-5
    row = report.table_rows({"ucf": s})[0]
    assert row["AUC"] == "(72.00 ± 2.83)" and row["status"] == "collapsed on seed 1"


def test_unknown_variant_is_refused(tmp_path, capsys):
    assert cli.main(["bench", "robustness", "--variants", "ucf,nope", "--work", str(tmp_path), "--list"]) == 2
    assert capsys.readouterr().err.startswith("gsmoe bench robustness: error: unknown variant(s) nope; known: ucf,")


def test_list_prints_every_variant_and_runs_nothing(tmp_path, capsys):
    assert cli.main(["bench", "robustness", "--profile", "tiny", "--work", str(tmp_path), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(R.VARIANTS)
    assert "5 seeds, 0 cached" in lines[0] and not (tmp_path / "runs").exists()
