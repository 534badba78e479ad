"""The training loop every stage shares: `fit`, the two update steps, and the frozen forward pass.

`fit(stage, config, modules, optimizer, iterations, batches, step)` runs `step(i, batch)` with resume: a
partial checkpoint (modules, optimiser, every global RNG state, iteration, loss history) is written every
`checkpoint_every` steps and when an exception stops the loop between two steps (a Ctrl-C / Jupyter
interrupt waits for the step to end: `StepBoundary`); the next call with the same config restores it and
fast-forwards `batches`, so a resumed stage gives bit for bit the numbers of an uninterrupted one, whether it
was interrupted or killed (tests/faults). Why fast-forward rather than save the sampler: a sampler is a
generator seeded per stage, and its state is exactly its position in the stream. A stage's other generators
are modules (`stages.RandomStream`), saved with the rest.

The update steps are the two objectives: `urdmu_update` (UR-DMU's MIL objective, the encoder stage) and
`tgs_update` (L_TGS, Eq. 6, for every stage after it). `gsmoe bench speed` times these same functions.

`frozen_forward` runs a frozen module (the encoder over the training set, the experts over cached features)
in evaluation mode, a chunk of samples at a time, so a stage's inputs are computed once instead of per step.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
from typing import Any, Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from gsmoe_lib import runs
from gsmoe_lib.device import autocast
from gsmoe_lib.losses import urdmu_loss
from gsmoe_lib.models.urdmu import URDMU
from gsmoe_lib.tgs import pseudo_labels, tgs_loss
from gsmoe_lib.training.config import TGSTrainingConfig

Outputs = torch.Tensor | tuple[torch.Tensor, ...]


def rng_state() -> dict[str, Any]:
    """Every global random stream a step may draw from, saved with a partial checkpoint: torch's CPU
    generator (dropout masks come from it), every CUDA device's when there is one, numpy's legacy global
    generator and Python's `random`. Plain tensors and ints, so the checkpoint loads with weights_only=True."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                        "gauss_next": gauss_next}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved (a checkpoint of an older version holds only "torch" / "cuda")."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "python" in state:
        p = state["python"]
        random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))


class StepBoundary:
    """Makes a step of `fit` whole with respect to Ctrl-C: `with boundary: step(...)`.

    Why: a KeyboardInterrupt (Ctrl-C, Jupyter's interrupt) raised in the middle of a step leaves the
    modules, the optimiser (Adam updates its parameters one after the other), the pseudo-label store and the
    RNG half-way through the step; a partial checkpoint written then resumes to other numbers than the
    uninterrupted run. So while fit runs (in the main thread, where signal handlers live) SIGINT only
    records the request, and the KeyboardInterrupt is raised at the start of the next step (or after the
    last), where everything is whole. A second Ctrl-C stops at once, and then no partial checkpoint is
    written (`torn`): the run resumes from the last periodic one. Any other exception inside a step also
    leaves the step torn.
    """

    def __init__(self) -> None:
        self.pending = False  # a Ctrl-C waits for the step to end
        self.torn = False  # inside a step (or stopped by a second Ctrl-C): the state is not a whole step
        self._previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.pending:  # the second Ctrl-C: stop now
            self.torn = True
            raise KeyboardInterrupt
        self.pending = True
        print("\ninterrupted: stopping after this step (Ctrl-C again stops at once, losing the steps since the "
              "last checkpoint)", file=sys.stderr, flush=True)

    def __enter__(self) -> "StepBoundary":
        self.raise_pending()
        self.torn = True
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> bool:
        if exc_type is None:
            self.torn = False
        return False

    def raise_pending(self) -> None:
        """Raise the KeyboardInterrupt of a Ctrl-C received during the last step."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def close(self) -> None:
        """Give SIGINT its previous handler back."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def fit(
    stage: runs.StageDir,
    config: dict[str, Any],
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    iterations: int,
    batches: Iterator[Any],
    step: Callable[[int, Any], dict[str, torch.Tensor]],
    checkpoint_every: int,
    progress: bool = True,
    log_every: int = 10,
    on_step: Callable[[int], None] | None = None,
) -> list[dict[str, float]]:
    """Run `step(iteration, batch)` for `iterations` steps with resume, and return the loss history.

    `step` does forward, backward and optimizer.step(), and returns detached loss parts; they are read
    back to the host (a synchronisation) only every `log_every` steps. A partial checkpoint (modules,
    optimiser, RNG, iteration, history) is written every `checkpoint_every` steps and when an exception
    stops the loop between steps (never with a step half done: `StepBoundary`); the next call with the same
    config resumes from it, fast-forwarding
    `batches` so the sampler continues where it stopped. `on_step(i)` is called after step i (a hook for
    tests and notebooks).
    """
    start, history = 0, []
    chash = runs.config_hash(config)
    if stage.partial_checkpoint.exists():
        ck = runs.load_checkpoint(stage.partial_checkpoint, kind=f"partial-{stage.stage}")
        if ck["config_hash"] == chash:
            for name, module in modules.items():
                module.load_state_dict(ck["modules"][name])
            optimizer.load_state_dict(ck["optimizer"])
            set_rng_state(ck["rng"])
            start, history = int(ck["iteration"]), list(ck["history"])
        # a partial checkpoint of another config is ignored and overwritten

    for _ in range(start):  # the sampler's state is its position in the stream
        next(batches)

    def save_partial(done: int) -> None:
        runs.save_checkpoint(stage.partial_checkpoint, {
            "modules": {n: m.state_dict() for n, m in modules.items()},
            "optimizer": optimizer.state_dict(), "rng": rng_state(), "iteration": done,
            "history": history, "config_hash": chash,
        }, kind=f"partial-{stage.stage}")

    bar = tqdm(range(start, iterations), desc=stage.stage, unit="it", disable=not progress,
               initial=start, total=iterations)
    done = start
    boundary = StepBoundary()  # a Ctrl-C lands between steps: the partial checkpoint holds whole steps
    try:
        for i in bar:
            with boundary:
                parts = step(i, next(batches))
            done = i + 1
            if done % log_every == 0 or done == iterations:
                values = {k: float(v) for k, v in parts.items()}  # one host sync per log_every steps
                history.append({"iteration": done, **values})
                bar.set_postfix(loss=f"{values.get('total', float('nan')):.4f}")
            if checkpoint_every and done % checkpoint_every == 0 and done < iterations:
                save_partial(done)
            if on_step is not None:
                on_step(i)
        boundary.raise_pending()
    except BaseException:
        if done > start and not boundary.torn:
            save_partial(done)
        raise
    finally:
        boundary.close()
    return history


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    """Gradients of `loss` (the old ones dropped, not zeroed: no memset) and one optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def tgs_update(scores: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None,
               first_epoch: bool | torch.Tensor, settings: TGSTrainingConfig, k: int,
               optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """One L_TGS step of any TGS-trained stage (encoder fine-tuning, experts, gate); returns the loss parts.

    scores [B, S] (float32, with gradient); labels [B]; teacher [B, S]: these samples' current pseudo-labels
    (a `PseudoLabels` store's), or None to splat the scores themselves (source "self"). `first_epoch`: True
    while the stage is in its first epoch (L_topk-norm only), or a bool tensor [B] per sample (experts whose
    own first epoch is not over).
    """
    if teacher is not None:
        pseudo = teacher
    elif isinstance(first_epoch, bool) and first_epoch:
        pseudo = torch.zeros_like(scores)
    else:
        pseudo = pseudo_labels(scores, settings.tgs)  # detached
    loss, parts = tgs_loss(scores, labels, pseudo, k, smooth_weight=settings.smooth_weight,
                           sparse_weight=settings.sparse_weight, topk_only=first_epoch)
    optimizer_step(loss, optimizer)
    return parts


def urdmu_update(model: URDMU, x: torch.Tensor, labels: torch.Tensor, k: int, optimizer: torch.optim.Optimizer,
                 amp: str = "none") -> dict[str, torch.Tensor]:
    """One UR-DMU MIL step (the encoder stage, and `gsmoe bench speed`'s encoder step); returns the loss parts.

    x [B, (C,) S, D] with the normal half of the batch first, labels [B]. Forward and loss under `amp`'s
    autocast, backward and the optimiser step outside it.
    """
    with autocast(x.device.type, amp):
        out = model(x, training_extras=True)
        loss, parts = urdmu_loss(out, labels, k)
    optimizer_step(loss, optimizer)
    return {**parts, "total": loss.detach()}


@torch.inference_mode()
def frozen_forward(fn: Callable[[torch.Tensor], Outputs], x: torch.Tensor, device: str, amp: str = "none",
                   chunk: int = 64, progress: bool = False, desc: str = "frozen forward") -> Outputs:
    """fn over x [N, ...] a chunk of samples at a time, without gradients: fn's output(s) [N, ...] in float32.

    `fn` is a frozen module's forward (put the module in eval mode first); each chunk is moved to `device`
    as float32 and run under `amp`'s autocast. A tuple output is concatenated element by element.
    """
    outs: list[Outputs] = []
    for start in tqdm(range(0, x.shape[0], chunk), desc=desc, unit="chunk", disable=not progress):
        with autocast(device, amp):
            out = fn(x[start:start + chunk].to(device).float())
        outs.append(tuple(o.float() for o in out) if isinstance(out, tuple) else out.float())
    if outs and isinstance(outs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outs))
    return torch.cat(outs)  # type: ignore[arg-type]
