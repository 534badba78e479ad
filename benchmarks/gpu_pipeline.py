"""Quick-profile pipeline on CUDA in fp32 and bf16 autocast: wall time per stage and the test metrics.

Used by benchmarks/gpu_check.sh to measure how bf16 changes the metrics (issue 5). Writes one JSON to argv[1].
"""

import json
import sys
import time
from dataclasses import replace

from gsmoe_lib import train
from gsmoe_lib.data.synthetic import synthesize

out = sys.argv[1]
root = synthesize("/tmp/gsmoe-quick", profile="quick", seed=0)
record = {}
for amp in sys.argv[2:] or ["none", "bf16"]:
    cfg = replace(train.config_for("quick", str(root), device="cuda"), amp=amp)
    t0 = time.perf_counter()
    data = train.load_data(cfg.data, cfg.device, progress=False)
    times = {"data": time.perf_counter() - t0}
    metrics = {}
    for i, stage in enumerate(train.STAGES):
        t = time.perf_counter()
        res = train.run_pipeline(cfg, f"/tmp/gsmoe-run-{amp}", train.STAGES[: i + 1], progress=False, data=data)
        times[stage] = time.perf_counter() - t
        metrics[stage] = {k: res[stage].metrics[k] for k in ("auc", "auc_abnormal", "ap", "ap_abnormal")}
    record[amp] = {"seconds": times, "metrics": metrics}
    print(amp, json.dumps(record[amp], indent=1), flush=True)
json.dump(record, open(out, "w"), indent=2)
