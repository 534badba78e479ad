"""`gsmoe data synth`: a synthetic feature dataset in the real on-disk formats of UCF-Crime or XD-Violence.

The synthetic data lets every notebook, test and `make reproduce` run end to end on a CPU without the
real I3D features (tens of GB). It is written in the *real* layouts (UR-DMU per-crop lists, the UR-DMU
UCF annotation with frame counts, the XD-Violence per-crop lists and annotation), so every run goes
through the same loaders as the real data. Nothing here is from the paper: the generative model is our
own design, and every knob is a field of `SynthConfig`.

Where each part lives (in the order the generator uses them):

  config.py    `SynthConfig` (every knob), `SYNTH_PROFILES` (tiny / quick / full) and `synth_config`
  plan.py      the plan: names, labels, lengths and windows of every video (steps 3-4 of the model)
  features.py  the default world (projection, directions), latent paths, crops and magnitude: the feature
               values (steps 1-2, 5-8)
  drift.py     the drift world: a second world written apart from the default (`--world drift`), used only to
               report (`gsmoe bench generalise`), never to choose a default
  write.py     `synthesize` (metadata, list and annotation files, features; atomic) and the command line

Neither world is separable by feature magnitude: the untrained L2-norm score (`data.magnitude`) is near chance
on both (features.py step 7, drift.py), as on real I3D features of subtle anomalies.

This face re-exports what callers use: `synthesize`, `SynthConfig`, `SYNTH_PROFILES`, `synth_config`,
`DATASET_FILE`, and `add_arguments` / `run` for `gsmoe data synth`.
"""

from gsmoe_lib.data.layouts import DATASET_FILE
from gsmoe_lib.data.synthetic.config import SYNTH_PROFILES, SynthConfig, synth_config
from gsmoe_lib.data.synthetic.write import GENERATOR_VERSION, WORLDS, add_arguments, run, synthesize

__all__ = ["DATASET_FILE", "GENERATOR_VERSION", "SYNTH_PROFILES", "SynthConfig", "WORLDS", "add_arguments", "run",
           "synth_config", "synthesize"]
