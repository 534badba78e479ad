"""gsmoe: reference open implementation of GS-MoE for weakly-supervised video anomaly detection.

Stages (see README.md and notebooks/):
  1. task encoder (UR-DMU) trained with MIL          -> gsmoe_lib.models.urdmu, gsmoe_lib.losses
  1b. TGS fine-tuning of the task encoder             -> gsmoe_lib.tgs
  2. class / cluster experts on task-aware features   -> gsmoe_lib.models.experts
  3. gate mixing the experts with the features        -> gsmoe_lib.models.gate
"""

# The one version number (pyproject reads it; CHANGELOG.md says what each version changed). Semantic versioning.
__version__ = "0.4.0"
