"""diagnostics.options_table: the mean ± std table of the MoE options benchmark records (notebook 11 shows it)."""

from gsmoe_lib import diagnostics


def record(seed, gate_auc, std=0.1, adv=2.0):
    m = {"auc": gate_auc, "auc_abnormal": 0.7, "ap": 0.5, "ap_abnormal": 0.6, "score_std": std}
    return {"ds": "ucf", "seed": seed, "group": "D0",
            "D0": {"gate": m, "tgs": dict(m, auc=0.8),
                   "diag": {"advantage": {"mean": adv, "n_positive": 9, "n_classes": 13},
                            "masking_drop": {"zero": 1.0 + seed, "mean": 0.5}}}}


def test_means_stds_diagnostics_and_collapse():
    df = diagnostics.options_table([record(0, 0.80), record(1, 0.90), {"ds": "ucf", "seed": 2, "error": "boom"}])
    gate = df[(df.stage == "gate")].iloc[0]
    assert gate["seeds"] == 2 and gate["auc"] == "85.00 ± 7.07"  # errors are left out
    assert gate["own-expert advantage"] == "2.00 ± 0.00" and gate["masking drop (zero)"] == "1.50 ± 0.71"
    assert gate["status"] == "ok" and list(df.stage) == ["tgs", "gate"]
    collapsed = diagnostics.options_table([record(0, 0.8), record(1, 0.8, std=1e-5)])
    assert set(collapsed.status) == {"collapsed"}
