"""Run folders: atomic writes, seeds, and the records that sit beside every result.

Every stage writes into a run folder::

    RUN/                       `Run(RUN)`; a multi-seed run holds RUN/seed-<s>/ (`Run(RUN).seed(s)`), each a Run
      pipeline_config.json     the PipelineConfig the stages were asked for
      <stage>/config.json      the stage's parameters (what makes it "the same run"), with "upstream": the
                               config hash of the stage it was trained on
      <stage>/env.json         versions, machine, seed, start / end time
      <stage>/checkpoint.pt    state_dicts and model_args (plain tensors; loaded with weights_only=True)
      <stage>/history.json     the logged training losses
      <stage>/metrics.json     test metrics of the stage
      <stage>/test_scores.npz  per-video test scores (and test_expert_scores.npz for experts and gate)
      <stage>/DONE             written last: the stage finished with this config (its hash)
      writer.lock              who trains into this folder now (`writer_lock`: pid, host, start time)

`Run` and `StageDir` are the only code that knows these names: the trainer, `gsmoe score` (inference.py)
and the notebooks read a run through them (`Run(RUN).seed(0).history("gate")`).

All writes go to a temporary name in the same folder, are flushed to disk and renamed into place, so an
interrupted write never leaves a truncated file under the final name, and nothing already written is lost;
a write that finds the disk full raises `DiskFull` naming the file. A record found truncated or corrupt
anyway (a bad copy, a failing disk) is a `BadRecord` naming it: the stage is neither loaded nor trained over.
One process writes a run folder at a time (`writer_lock`); readers never lock.

**A finished stage is never overwritten.** A stage's identity is the hash of its config (`config_hash`),
which `training.config.stage_config` builds normalised: the dataset resolved, every path absolute, so the
same run asked for from the command line, from `gsmoe reproduce` or from a notebook hashes the same. Asking a run
folder for a stage that finished with *another* config is an error (`StageConflict`) that names the keys
that differ and how to go on; nothing in the folder is touched. Decision (the alternative, a folder per
config, would make the notebooks' default run folder silently grow a second pipeline): to get the new
config, either give it its own run folder, or replace the stage on purpose with `gsmoe train --replace`
(in Python: `with runs.replace_finished_stages(): ...`), which first *moves* the finished stage folder,
whole, to RUN/replaced/<stage>-<time>/ (one rename) and then trains a fresh one. The stages after it have
the replaced stage's hash in their config ("upstream"), so they are replaced in turn when asked for.
A stage that never finished (no DONE) is simply resumed or restarted: there is no result to lose.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import socket
import platform
import random
import sys
import tempfile
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

CHECKPOINT_FORMAT = "gsmoe-checkpoint-v1"


class DiskFull(OSError):
    """A write failed for want of space (ENOSPC, a quota, a file-size limit); the file it names is unchanged."""


# errno values that mean "no room for this write": the disk, a quota, a file-size limit (RLIMIT_FSIZE)
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success flush it to disk and rename it to `path`, on error
    delete it. A write that runs out of space raises `DiskFull` naming `path`: the file under that name (a
    previous checkpoint, a finished stage's record) is untouched, and the run resumes once there is room."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        _raise_if_no_space(exc, path)
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data is on disk before the name points at it
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        _raise_if_no_space(exc, path)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def _raise_if_no_space(exc: OSError, path: Path) -> None:
    if exc.errno in _NO_SPACE:
        raise DiskFull(exc.errno, f"{path}: the disk is full ({os.strerror(exc.errno)}) while writing this file; "
                       "it was not changed (the previous version, if any, is intact). Free some space and run "
                       "the same command again: it resumes from the last checkpoint") from exc


def _to_jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return _to_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def json_text(obj: Any) -> str:
    """What `write_json` writes for `obj`: indented, key-sorted JSON."""
    return json.dumps(_to_jsonable(obj), indent=2, sort_keys=True, allow_nan=True) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write `obj` (dataclasses, numpy scalars and paths allowed) as indented, key-sorted JSON."""
    text = json_text(obj)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


class BadRecord(ValueError):
    """A run folder's file is truncated or corrupt (config.json, metrics.json, DONE, a score or checkpoint
    file): the error names it, and the stage is neither loaded nor trained over."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRecord(f"{path}: not valid JSON ({exc}); the file is truncated or was not written by gsmoe") from exc


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any], kind: str) -> Path:
    """Atomically save a checkpoint: a dict of state_dicts / tensors / plain values, tagged with its kind.

    `kind` names what the checkpoint holds ("urdmu", "experts", "gate", ...) so that loading a checkpoint
    of another kind is a clear error rather than a confusing key mismatch.
    """
    import torch

    payload = dict(payload)
    payload["format"] = CHECKPOINT_FORMAT
    payload["kind"] = kind
    buffer = io.BytesIO()  # serialised in memory, written by Python: a full disk is an OSError naming the file
    torch.save(payload, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())
    return Path(path)


def load_checkpoint(path: str | os.PathLike, kind: str, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`, checking it is complete and of the expected kind."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        # weights_only: tensors, numbers, strings and containers only; a file carrying a pickled callable
        # (code that would run on load) is refused, never executed
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle of foreign objects, ...
        raise BadRecord(f"{path}: cannot read checkpoint ({_first_line(exc)}); the file is truncated, corrupt, "
                        "or not a gsmoe checkpoint (a file holding anything but tensors and plain values, such "
                        "as a pickled function, is refused and never executed)") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a gsmoe checkpoint (no '{CHECKPOINT_FORMAT}' tag); "
                         "a released UR-DMU state_dict is loaded with gsmoe_lib.models.urdmu.load_released")
    if payload.get("kind") != kind:
        raise ValueError(f"{path}: checkpoint holds '{payload.get('kind')}', expected '{kind}'")
    return payload


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) so the same seed on the same machine gives the same numbers."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def environment_record(seed: int | None = None, device: str | None = None) -> dict[str, Any]:
    """Versions, machine and seed, written beside every result."""
    import torch

    from gsmoe_lib import __version__

    rec: dict[str, Any] = {
        "gsmoe": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "seed": seed,
        "device": device,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        import scipy
        import sklearn

        rec["scipy"] = scipy.__version__
        rec["scikit-learn"] = sklearn.__version__
    except ImportError:  # pragma: no cover
        pass
    return rec


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


HASH_LENGTH = 16  # hex digits of a config hash (what DONE holds)


def config_hash(config: Any) -> str:
    """A short, stable hash of a stage's config: a finished stage with the same hash is skipped."""
    text = json.dumps(_to_jsonable(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


class StageConflict(ValueError):
    """A stage asked for with one config has finished with another; nothing was changed (see the docstring)."""


# Set by `replace_finished_stages()`: finished stages of another config are moved aside instead of refused.
_REPLACE_FINISHED: ContextVar[bool] = ContextVar("gsmoe_replace_finished_stages", default=False)

REPLACED_DIR = "replaced"  # RUN/replaced/<stage>-<time>/: finished stages moved aside by a replacement


@contextmanager
def replace_finished_stages() -> Iterator[None]:
    """Within this block a stage that finished with another config is moved aside and trained again."""
    token = _REPLACE_FINISHED.set(True)
    try:
        yield
    finally:
        _REPLACE_FINISHED.reset(token)


# ---------------------------------------------------------------------------------------------------
# One writer per run folder
# ---------------------------------------------------------------------------------------------------

LOCK_NAME = "writer.lock"  # RUN/writer.lock: who trains into RUN now (pid, host, start time, command)
_LOCK_WAIT: ContextVar[float] = ContextVar("gsmoe_writer_lock_wait", default=0.0)
_HELD: dict[Path, list[int]] = {}  # lock path -> [fd, depth]: a process re-enters its own lock


class RunLocked(OSError):
    """Another process is writing this run folder (its writer.lock is held); the message names it."""


@contextmanager
def wait_for_writer(seconds: float) -> Iterator[None]:
    """Within this block `writer_lock` waits up to `seconds` for another writer to finish instead of refusing."""
    token = _LOCK_WAIT.set(float(seconds))
    try:
        yield
    finally:
        _LOCK_WAIT.reset(token)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_record(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


@contextmanager
def writer_lock(run_dir: str | os.PathLike, wait: float | None = None) -> Iterator[None]:
    """Hold RUN/writer.lock while training into RUN: a second writer waits `wait` seconds (default 0, or
    `wait_for_writer`'s) and then refuses with `RunLocked`, naming the holder's pid, host and start time.

    Decision: the lock is the operating system's (`fcntl.flock` on the file), so a holder that is killed
    (SIGKILL, a pre-empted job) releases it with its last file descriptor: its record is stale and the
    next writer takes it over, saying so. The file holds the holder's record for the message only. Readers
    (loading finished stages, scoring, the notebooks' figures) never lock. Re-entrant within a process.
    """
    import fcntl

    path = Path(run_dir).resolve() / LOCK_NAME
    if path in _HELD:
        _HELD[path][1] += 1
        try:
            yield
        finally:
            _HELD[path][1] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + (_LOCK_WAIT.get() if wait is None else wait)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    h = _lock_record(path)
                    holder = (f"process {h.get('pid', '?')} on host {h.get('host', '?')}, started "
                              f"{h.get('started', '?')} ({h.get('command', '?')})") if h else "a process starting now"
                    raise RunLocked(errno.EWOULDBLOCK, f"{path.parent}: another process is writing this run folder: "
                                    f"{holder}; lock file {path}. Wait for it to finish, give this run another "
                                    f"folder, or wait for it (`gsmoe train --wait SECONDS`)") from None
                time.sleep(0.2)
        stale = _lock_record(path)
        if stale.get("pid") and (stale.get("host") != socket.gethostname() or not _pid_alive(int(stale["pid"]))):
            print(f"{path}: took over the lock of process {stale['pid']} on {stale.get('host')} (started "
                  f"{stale.get('started')}), which stopped without releasing its record", file=sys.stderr, flush=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    _HELD[path] = [fd, 1]
    try:
        yield
    finally:
        del _HELD[path]
        try:
            os.ftruncate(fd, 0)  # an empty record: nobody holds it
        finally:
            os.close(fd)  # releases the flock


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: the dotted keys of a JSON-like config."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): obj}


def config_differences(old: Any, new: Any, limit: int = 8) -> list[str]:
    """`key: old -> new` for every dotted key whose value differs (at most `limit`, then a count)."""
    a, b = _flatten(_to_jsonable(old)), _flatten(_to_jsonable(new))
    missing = object()
    diff = [f"{k}: {a.get(k, missing)!r} -> {b.get(k, missing)!r}".replace(repr(missing), "(absent)")
            for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)]
    return diff[:limit] + ([f"... and {len(diff) - limit} more"] if len(diff) > limit else [])


class StageDir:
    """One stage of a run folder (RUN/<stage>/) and its files."""

    def __init__(self, run_dir: str | os.PathLike, stage: str):
        self.path = Path(run_dir) / stage
        self.stage = stage

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def partial_checkpoint(self) -> Path:
        """Written periodically during training; resumed from after an interruption."""
        return self.path / "checkpoint.partial.pt"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def done_path(self) -> Path:
        return self.path / "DONE"

    def finished_hash(self) -> str | None:
        """The config hash this stage finished with, or None when it has not finished; a DONE file that does
        not hold a config hash (truncated, corrupt) is a `BadRecord` naming it."""
        if not self.done_path.is_file():
            return None
        raw = self.done_path.read_bytes()
        text = raw.decode("ascii", errors="replace").strip()
        if len(text) != HASH_LENGTH or any(c not in "0123456789abcdef" for c in text):
            raise BadRecord(f"{self.done_path}: truncated or corrupt (expected a {HASH_LENGTH}-digit config hash, "
                            f"found {raw[:40]!r}). {self._not_retrained}")
        return text

    @property
    def _not_retrained(self) -> str:
        return (f"The stage is neither loaded nor trained over: inspect {self.path}, then move it aside (or run "
                f"`gsmoe train --run {self.path.parent} --replace ...`, which moves it to "
                f"{self.path.parent / REPLACED_DIR}/) to train it again")

    def verify(self) -> None:
        """Check a finished stage's records before it is loaded: DONE holds a hash, config.json reads and hashes
        to it, metrics.json reads, every test_<name>.npz opens. A truncated or corrupt one is a `BadRecord`
        naming the file (the checkpoint is checked when it is loaded, `load_checkpoint`)."""
        finished = self.finished_hash()
        if finished is None:
            return
        for record in (self.path / "config.json", self.metrics_path):
            if not record.is_file():
                raise BadRecord(f"{record}: missing from a finished stage. {self._not_retrained}")
            try:
                value = read_json(record)
            except BadRecord as exc:
                raise BadRecord(f"{exc}. {self._not_retrained}") from None
            if record.name == "config.json" and config_hash(value) != finished:
                raise BadRecord(f"{record}: does not match the stage's DONE ({finished}): the file was changed "
                                f"or is corrupt. {self._not_retrained}")
        for scores in sorted(self.path.glob("test_*.npz")):
            try:
                load_scores(scores)
            except BadRecord as exc:
                raise BadRecord(f"{exc}. {self._not_retrained}") from None

    def is_done(self, config: Any) -> bool:
        """True when this stage finished with the same config (its DONE file holds the config hash). A bad DONE
        is a `BadRecord`, except inside `replace_finished_stages()`, where the stage is not done (`start`
        moves it aside)."""
        try:
            return self.finished_hash() == config_hash(config) and self.checkpoint.is_file()
        except BadRecord:
            if _REPLACE_FINISHED.get():
                return False
            raise

    def check_can_start(self, config: Any) -> None:
        """Raise StageConflict when the stage finished with another config (see the module docstring)."""
        finished = self.finished_hash()
        if finished is None or finished == config_hash(config):
            return
        try:
            recorded = read_json(self.path / "config.json")
            diff = config_differences(recorded, config)
            what = "; ".join(diff) if diff else "no key (its config.json does not match its DONE hash)"
        except (FileNotFoundError, ValueError):
            what = "unknown keys (its config.json is missing or unreadable)"
        run = self.path.parent
        raise StageConflict(
            f"{self.path}: this stage finished with another config; differing keys (finished -> asked): {what}. "
            f"A finished stage is never overwritten. To keep both, use another run folder (the notebooks' "
            f"run_dir, `--run` / `--out`); to replace it on purpose, use `gsmoe train --run {run} --replace ...` "
            f"(Python: `with gsmoe_lib.runs.replace_finished_stages(): ...`), which moves it to "
            f"{run / REPLACED_DIR}/ first")

    def check(self, config: Any) -> None:
        """Everything that refuses a stage, checked before anything is written: a finished stage of another
        config (`StageConflict`) or with a bad record (`BadRecord`). Inside `replace_finished_stages()` neither
        refuses: `start` moves such a stage aside."""
        if _REPLACE_FINISHED.get():
            return
        self.check_can_start(config)
        self.verify()

    def start(self, config: Any, seed: int | None, device: str | None = None) -> None:
        """Record the config before training. Refuses (StageConflict) to touch a stage finished with another
        config, and (BadRecord) one whose records are truncated, unless inside `replace_finished_stages()`,
        where that stage folder is first moved aside whole. Call it holding the run's `writer_lock`."""
        try:
            finished = self.finished_hash()
            if finished == config_hash(config):
                self.verify()
        except BadRecord:
            if not _REPLACE_FINISHED.get():
                raise
            finished = "bad-record"
        if finished is not None and finished != config_hash(config):
            if not _REPLACE_FINISHED.get():
                self.check_can_start(config)
            aside = self.path.parent / REPLACED_DIR / f"{self.stage}-{time.strftime('%Y%m%d-%H%M%S')}-{finished}"
            aside.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, aside)  # one rename: the old stage is either whole here or whole there
            print(f"{self.path}: finished with another config; moved to {aside}", file=sys.stderr, flush=True)
        self.path.mkdir(parents=True, exist_ok=True)
        for leftover in self.path.glob(".*.tmp"):  # temporary files of a write that was killed (atomic_path)
            leftover.unlink(missing_ok=True)
        # Same hash but no checkpoint (a broken stage): it is trained again, and must not look finished meanwhile.
        self.done_path.unlink(missing_ok=True)
        write_json(self.path / "config.json", config)
        write_json(self.path / "env.json", environment_record(seed, device))

    def finish(self, config: Any, metrics: dict[str, Any] | None = None) -> None:
        if metrics is not None:
            write_json(self.metrics_path, metrics)
        if self.partial_checkpoint.exists():
            self.partial_checkpoint.unlink()
        write_text(self.done_path, config_hash(config) + "\n")

    def metrics(self) -> dict[str, Any]:
        return read_json(self.metrics_path)

    def config(self) -> dict[str, Any]:
        """The config the stage was started with (config.json)."""
        return read_json(self.path / "config.json")

    def history(self) -> list[dict[str, float]]:
        """The logged training losses (history.json): one row per log step, {"iteration", "total", ...}."""
        return read_json(self.path / "history.json")

    def scores(self, which: str = "scores") -> dict[str, np.ndarray]:
        """Per-video test scores, video name -> [T] ("scores") or [T, E] ("expert_scores")."""
        return load_scores(self.path / f"test_{which}.npz")

    def load_checkpoint(self, kind: str, map_location: Any = "cpu") -> dict[str, Any]:
        return load_checkpoint(self.checkpoint, kind, map_location)

    def write_results(self, payload: dict[str, Any], kind: str, history: list[dict[str, float]],
                      scores: dict[str, dict[str, np.ndarray]]) -> None:
        """Everything a trained stage leaves before `finish`: checkpoint, history, test_<name>.npz per scores."""
        save_checkpoint(self.checkpoint, payload, kind=kind)
        write_json(self.path / "history.json", history)
        for name, video_scores in scores.items():
            save_scores(self.path / f"test_{name}.npz", video_scores)


def save_scores(path: str | os.PathLike, scores: dict[str, np.ndarray]) -> None:
    """Atomically write per-video scores (name -> array) as an .npz."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **scores)


def load_scores(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Per-video test scores written by a stage (name -> [T] or [T, E]), in the test list's order.

    allow_pickle=False: a score file holding Python objects is refused, never unpickled; a truncated or
    corrupt one is a `BadRecord` naming it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, EOFError, ValueError (objects, a bad header), ...
        raise BadRecord(f"{path}: cannot read the score file ({_first_line(exc)}); it is truncated, corrupt or "
                        "not written by gsmoe") from exc


class Run:
    """A run folder: the stage folders of one training run, or seed-<s>/ folders each holding one.

    `Run(RUN).seed(s)` is RUN/seed-<s> (what the notebooks and `gsmoe reproduce` train into); the stage
    accessors read RUN/<stage>/ of the folder they are called on.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    def seed(self, seed: int) -> "Run":
        """RUN/seed-<seed>: the training run of one seed."""
        return Run(self.path / f"seed-{seed}")

    def seeds(self) -> list[int]:
        """The seeds of RUN/seed-<s>/ folders present, sorted."""
        found = (p.name.removeprefix("seed-") for p in self.path.glob("seed-*") if p.is_dir())
        return sorted(int(s) for s in found if s.lstrip("-").isdigit())

    def training(self, seed: int = 0, stage: str = "tgs") -> "Run":
        """The folder holding the stage folders: this one when it has `stage`/, else seed-<seed>/ (or an error)."""
        if (self.path / stage).is_dir():
            return self
        seeded = self.seed(seed)
        if (seeded.path / stage).is_dir():
            return seeded
        raise FileNotFoundError(f"{self.path}: not a finished run (no {stage}/ stage folder in it or in "
                                f"seed-{seed}/); train one with `gsmoe train --run RUN`")

    def stage(self, name: str) -> StageDir:
        return StageDir(self.path, name)

    def stages(self, prefix: str) -> list[StageDir]:
        """Stage folders named `prefix` or `prefix-<variant>` (e.g. experts, experts-k5), sorted by name."""
        return [StageDir(self.path, p.name) for p in sorted(self.path.glob(f"{prefix}*"))
                if p.is_dir() and (p.name == prefix or p.name.startswith(f"{prefix}-"))]

    def finished(self, name: str) -> bool:
        return self.stage(name).finished_hash() is not None

    def upstream(self, name: str, candidates: str) -> StageDir:
        """The finished stage among `candidates` (a stage prefix) that stage `name` was trained on.

        A stage's config.json records the config hash of its upstream stage, and a finished stage's DONE
        holds its own hash: the match is by hash, never by folder name, so an ablation gate (gate-<v>) finds
        its experts-<v>, and a stage whose upstream was retrained since is a clear error.
        """
        stage = self.stage(name)
        if stage.finished_hash() is None:
            raise FileNotFoundError(f"{stage.path}: the {name} stage has not finished (no DONE file)")
        wanted = stage.config()["upstream"]
        found = [s for s in self.stages(candidates) if s.finished_hash() == wanted]
        if not found:
            raise ValueError(f"{stage.path}: no finished {candidates} stage in {self.path} matches its upstream "
                             f"config {wanted} (retrained or deleted since {name} was trained?)")
        return found[0]

    def history(self, name: str) -> list[dict[str, float]]:
        return self.stage(name).history()

    def metrics(self, name: str) -> dict[str, Any]:
        return self.stage(name).metrics()

    def config(self, name: str) -> dict[str, Any]:
        return self.stage(name).config()

    def scores(self, name: str, which: str = "scores") -> dict[str, np.ndarray]:
        return self.stage(name).scores(which)
