"""TEMPORARY shim: the Sultani reference stage moved to `gsmoe_lib.training.sultani` (its config to
`gsmoe_lib.training.config.SultaniConfig`, its model stays in `gsmoe_lib.models.sultani`). To be removed."""

from gsmoe_lib.training.config import SultaniConfig  # noqa: F401
from gsmoe_lib.training.config import stage_config as _stage_config
from gsmoe_lib.training.sultani import CROP_MODES, STAGE, pool_bags, score_fn, train_sultani  # noqa: F401


def stage_config(cfg):
    return _stage_config(cfg, STAGE, None)
