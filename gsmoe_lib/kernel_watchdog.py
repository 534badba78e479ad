"""A papermill engine that notices a kernel sitting idle while papermill waits for it, and fails at once.

papermill's client (nbclient) sends a cell, then waits for the cell's reply on the shell channel for as
long as the cell timeout allows (`notebook.default_cell_timeout`: hours for a real run). When a message
is lost between the two (a request the kernel never read, a reply that never arrived), both processes sit
idle until that timeout. The watchdog reads what the client already records of each cell (nbclient's
`record_timing` metadata: when the kernel reported busy, idle, and when the reply came) and stops the run
with `KernelIdle`, naming the notebook's cell, when

- the kernel reported the cell finished (status idle) and its reply has not come within `idle_grace`
  seconds (a lost reply), or
- the kernel has not started the cell (no status busy) within `idle_grace` seconds of the request (a lost
  request; the kernel runs one cell at a time, so it is idle).

The request papermill sends after the last cell (kernel_info, for the notebook's metadata) waits
`idle_grace` seconds, not the cell timeout: an idle kernel answers it at once.

Registered with papermill as the engine "gsmoe-watched" (`notebook.execute_notebook` uses it).
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import Any

from nbclient.exceptions import DeadKernelError
from nbclient.util import run_sync
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines

from gsmoe_lib.notebook import NotebookFailed

ENGINE = "gsmoe-watched"
IDLE_GRACE = 120.0  # seconds a lost message may keep a run waiting (default)


class KernelIdle(NotebookFailed):
    """The kernel sat idle while papermill waited for it: a message between them was lost."""


class WatchedClient(PapermillNotebookClient):
    """papermill's client with the idle-kernel watchdog (module docstring)."""

    def __init__(self, nb_man: Any, idle_grace: float = IDLE_GRACE, **kw: Any) -> None:
        super().__init__(nb_man, **kw)
        self.idle_grace = float(idle_grace)
        self._stalled: str | None = None

    async def async_execute_cell(self, cell: Any, cell_index: int, execution_count: int | None = None,
                                 store_history: bool = True) -> Any:
        watch = asyncio.ensure_future(self._watch(cell, cell_index))
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        except DeadKernelError:
            if self._stalled:  # the watchdog cancelled the wait (nbclient reads a cancel as a dead kernel)
                raise KernelIdle(self._stalled) from None
            raise
        finally:
            watch.cancel()

    async def _watch(self, cell: Any, cell_index: int) -> None:
        if cell.get("cell_type") != "code" or not cell.get("source", "").strip():
            return
        sent = monotonic()
        idle_since: float | None = None
        while True:
            await asyncio.sleep(0.25)
            seen = cell.get("metadata", {}).get("execution", {})
            if "shell.execute_reply" in seen:
                return
            if "iopub.status.idle" in seen:
                idle_since = idle_since or monotonic()
                waited, what = monotonic() - idle_since, "finished the cell (status idle) but its reply never came"
            elif "iopub.status.busy" not in seen:
                waited, what = monotonic() - sent, "never started the cell (no status busy): the request was lost"
            else:
                continue
            if waited > self.idle_grace:
                self._stalled = (f"cell {cell_index} (execution count {cell.get('execution_count')}): the kernel "
                                 f"{what}; kernel and papermill were both idle for {waited:.0f} s, so the run was "
                                 f"stopped instead of waiting for the cell timeout. Rerun: finished notebooks and "
                                 f"training stages are kept")
                if self.task_poll_for_reply is not None:
                    self.task_poll_for_reply.cancel()
                return

    # nbclient binds its synchronous face to the base class's coroutine: bind it to this one
    execute_cell = run_sync(async_execute_cell)

    def _get_timeout(self, cell: Any) -> int | None:
        if cell is None:  # papermill's kernel_info after the last cell: an idle kernel answers at once
            return int(max(1.0, self.idle_grace))
        return super()._get_timeout(cell)


class WatchedEngine(NBClientEngine):
    """papermill's nbclient engine with `WatchedClient`; `idle_grace` is an engine keyword argument."""

    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, log_output: bool = False,
                                 stdout_file: Any = None, stderr_file: Any = None, start_timeout: int = 60,
                                 execution_timeout: int | None = None, idle_grace: float = IDLE_GRACE,
                                 **kwargs: Any) -> Any:
        kwargs.pop("input_path", None)
        kwargs.pop("timeout", None)
        kwargs.pop("startup_timeout", None)
        return WatchedClient(nb_man, idle_grace=idle_grace, timeout=execution_timeout, startup_timeout=start_timeout,
                             kernel_name=kernel_name, log=_logger(), log_output=log_output, stdout_file=stdout_file,
                             stderr_file=stderr_file, **kwargs).execute()


def _logger() -> Any:
    from papermill.log import logger

    return logger


papermill_engines.register(ENGINE, WatchedEngine)
