"""Training GS-MoE: every stage, from a config to a finished stage folder. One concept per module:

    config.py         the config dataclasses, the profiles, `config_for` (the one resolver), stage identity
    data.py           `load_data`: both splits opened, the training set pooled once on the device
    loop.py           `fit` (resumable loop), the update steps (`urdmu_update`, `tgs_update`), `frozen_forward`
    pseudo_labels.py  the TGS pseudo-label store, its schedule (first epoch, refreshes) and its checks
    stages.py         `load_or_train`, the skeleton of every stage; the encoder and TGS stages; SEED_OFFSETS
    moe_stages.py     the experts and gate stages, on the frozen encoder's cached features
    class_teachers.py per-class teachers of the experts' pseudo-labels (an extension; RUN/class_teachers)
    validation.py     weakly-supervised validation: the held-out training videos, early stopping, best checkpoint
    sultani.py        the Sultani et al. reference stage (RUN/sultani)
    topk_mil.py       the top-k MIL MLP reference stage (RUN/topk_mil)
    pipeline.py       `run_pipeline`, `run_variant` and the upstream-hash chain between stages
    command.py        `gsmoe train`

The package imports nothing itself: import the module you need (`from gsmoe_lib.training import pipeline`).
"""
