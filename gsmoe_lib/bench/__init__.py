"""`gsmoe bench ...`: the benchmarks, one subcommand and one module each (listed in `gsmoe_lib.cli.COMMANDS`).

    speed             training steps, test-set scoring and its peak memory at paper sizes (`speed`; the pieces:
                      `sizes`, `meters`, `steps`, `scoring`, `memory`)
    precision         fp32 / bf16 / TF32: their effect on every stage's metrics and time, over seeds
    robustness        the whole pipeline over variants of the synthetic generator x seeds, checked against the targets
                      (`robustness`; the summary, targets and tables: `robustness_report`)
    generalise        the references and every stage on each synthetic world (default, drift, XD-shaped) x seeds,
                      beside each world's untrained L2-norm AUC (`generalise`)
    scoring-options   crops "each" / "mean" x fp32 / bf16 on a finished run's test metrics and time
    moe-options       the MoE options (pseudo-label sources, extensions) over seeds
    encoder-schedule  test metrics along training of the quick encoder or the Sultani MIL stage
    context           a finished run's encoder scored with its context cut to windows of w snippets
    paper-pipeline    the four stages at paper-scale training settings, end to end, timed
    extract           `gsmoe extract`: snippets/s of decoding, the model and both; peak memory on a long video

Nothing is imported here: `gsmoe bench precision` imports only what precision needs (cli's lazy import).
Results, shell scripts for the lent GPU machines and the write-ups stay in benchmarks/.
"""
