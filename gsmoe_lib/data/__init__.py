"""Feature datasets: list and annotation files (`lists`), on-disk layouts (`layouts`), frame ground
truth (`ground_truth`), the pooled training set and batch sampler (`batching`), `gsmoe data check`
(`check`) and the synthetic dataset (the `synthetic` package: config, plan, features, write).
See docs/design.md for the contracts."""
