"""The interactive path in a real browser: JupyterLab, notebooks 50 and 51, Run All, the widgets used by hand.

JupyterLab is started from this environment on a free local port, with its own settings, workspace and
runtime folders (nothing of the user's is read or written), and driven by headless Chromium through
Playwright for Python. The browser is Debian's `chromium` (`/usr/bin/chromium`, or $GSMOE_CHROMIUM); no
browser is downloaded. Without Chromium or Playwright the test is skipped with the reason (pytest -ra
prints it), never silently.

The notebooks are the repository's, copied into a temporary folder with their `parameters` cell pointed
at the session's finished tiny run (tests/conftest.py), as a user edits that cell: profile "tiny", the
run's data root and a copy of the run as `run_dir`. For each notebook the test clicks Run > Run All
Cells, saves it, and checks: no error output in the saved notebook, the widgets render (slider and
button elements, no "Error displaying widget"), dragging a slider redraws the plot, and clicking save
writes the file (after deleting the one the notebook's own batch cell wrote). Screenshots stay in the
test's temporary folder. The server is shut down through its REST API (kernels first), then its process
group is ended.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from gsmoe_lib.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("GSMOE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RUN_ALL_TIMEOUT_S = 300  # one notebook's Run All on a loaded 2-core machine (measured: see README, Tests)
# Which slider to drag and which file "save" writes, per notebook. The σ floor widens every kernel (the
# tiny run's curves have kernels), the threshold moves the dashed line: both change the picture.
CASES = {
    "50_tgs_tuner": ("σ floor (snippets)", "tgs_config.json"),
    "51_alarm_threshold": ("threshold", "operating_point.json"),
}


def _browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"Playwright for Python is not installed ({exc}); `make setup` installs the dev extras")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's package (`apt-get install -y chromium`, as .ci/run "
                    "does) or set GSMOE_CHROMIUM")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _point_parameters(src: Path, dst: Path, values: dict[str, object]) -> None:
    """Copy a notebook, setting parameters-cell defaults as a user would edit them (comments kept)."""
    nb = nbformat.read(str(src), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    lines = cell.source.splitlines()
    for name, value in values.items():
        hits = [i for i, line in enumerate(lines) if re.match(rf"{name}\s*:", line)]
        assert len(hits) == 1, f"{src.name}: parameter {name} not declared once"
        head, _, comment = lines[hits[0]].partition("  # ")
        lines[hits[0]] = f"{head.split('=')[0].rstrip()} = {value!r}  # {comment}"
    cell.source = "\n".join(lines)
    nbformat.write(nb, str(dst))


class Lab:
    """A JupyterLab server of this environment on a free port, in its own process group."""

    def __init__(self, root: Path, home: Path):
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
               "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
        env.pop("MPLBACKEND", None)  # the kernel's inline backend, as for a user
        self.log = open(home / "jupyterlab.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={root}", "--LabApp.extension_manager=readonly", "--LabApp.news_url=",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
             "--allow-root"],  # CI containers run as root; harmless otherwise
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)

    def api(self, path: str, method: str = "GET") -> object:
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def wait_ready(self, timeout: float = 180) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}; see {self.log.name}")
            try:
                self.api("/api/status")
                return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer within {timeout} s; see {self.log.name}")

    def shutdown(self) -> list[str]:
        """Shut kernels and server down; return the ids of kernels that were running."""
        ids = []
        try:
            for kernel in self.api("/api/kernels"):
                ids.append(kernel["id"])
                self.api(f"/api/kernels/{kernel['id']}", method="DELETE")
            self.api("/api/shutdown", method="POST")
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:  # our own process group only: the server and its kernels
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
            self.log.close()
        return ids


@pytest.fixture(scope="module")
def lab_run(tiny_run, tiny_data, tmp_path_factory):
    """The notebooks folder JupyterLab opens, and the run (a copy of the tiny run) they point at."""
    sync_playwright = _browser_or_skip()
    tmp = tmp_path_factory.mktemp("lab")
    run = tmp / "run"
    shutil.copytree(tiny_run / "seed-0", run / "seed-0", ignore=shutil.ignore_patterns("*.partial.pt"))
    folder = tmp / "notebooks"
    folder.mkdir()
    for name in CASES:
        _point_parameters(PROJECT_ROOT / "notebooks" / f"{name}.ipynb", folder / f"{name}.ipynb",
                          {"run_dir": str(run), "data_root": str(tiny_data), "profile": "tiny"})
    lab = Lab(folder, tmp)
    start, kernels = time.monotonic(), []  # ids of the kernels the tests shut down
    try:
        lab.wait_ready()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                yield {"lab": lab, "browser": browser, "folder": folder, "run": run, "shots": tmp, "kernels": kernels}
            finally:
                browser.close()
    finally:
        kernels += lab.shutdown()
        print(f"\nbrowser test: {time.monotonic() - start:.1f} s with JupyterLab up; kernels shut down: "
              f"{len(kernels)}; screenshots in {tmp}")
    assert lab.proc.poll() is not None, "JupyterLab still running"


def _ink(data_url: str) -> float:
    """Share of non-white pixels of a data:image/png URL (a blank redraw has almost none)."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("L"))
    return float((pixels < 250).mean())


def _open(page, lab: Lab, name: str) -> None:
    """Open a notebook as a user would and wait until its kernel is connected and idle."""
    # A workspace of its own: JupyterLab restores no tab of another notebook (whose widgets would be dead).
    page.goto(f"{lab.base}/lab/workspaces/{name}/tree/{name}.ipynb?token={lab.token}", timeout=180_000)
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=180_000)
    end = time.monotonic() + 180
    while True:
        # On a slow start JupyterLab may ask which kernel to use, the notebook's own preselected: accept it.
        select = page.get_by_role("button", name="Select", exact=True)
        if select.count():
            select.click()
        kernels = lab.api("/api/kernels")
        if kernels and all(k["execution_state"] == "idle" and k["connections"] > 0 for k in kernels):
            return
        assert time.monotonic() < end, f"{name}: no connected idle kernel after 180 s: {kernels}"
        time.sleep(0.5)


def _run_all(page, name: str) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
    # Done when no cell waits ("[*]") and at least one has run: an error stops Run All the same way.
    page.wait_for_function(
        """() => { const p = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
                   .map(e => e.textContent); return p.some(t => /\\[\\d+\\]/.test(t)) && !p.some(t => t.includes('*')); }""",
        timeout=RUN_ALL_TIMEOUT_S * 1000)


@pytest.mark.parametrize("name", list(CASES))
def test_run_all_then_use_the_widgets_by_hand(lab_run, name):
    lab, folder, run, shots = lab_run["lab"], lab_run["folder"], lab_run["run"], lab_run["shots"]
    slider_label, saved_name = CASES[name]
    page = lab_run["browser"].new_page(viewport={"width": 1400, "height": 1000})
    try:
        _open(page, lab, name)
        _run_all(page, name)
        page.screenshot(path=str(shots / f"{name}-1-run-all.png"), full_page=True)
        page.keyboard.press("Control+s")
        page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=30_000)

        # No error output, and every code cell ran (in the saved notebook, outputs included).
        saved = nbformat.read(str(folder / f"{name}.ipynb"), as_version=4)
        errors = [o for c in saved.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{name}: " + "; ".join(f"{o.ename}: {o.evalue}" for o in errors)
        assert all(c.execution_count for c in saved.cells if c.cell_type == "code"), f"{name}: a cell did not run"

        # The widget rendered: its sliders and buttons exist, and no widget failed to display.
        widget = page.locator(".jp-OutputArea .widget-vbox").first
        assert widget.locator(".widget-hslider").count() >= 1 and widget.locator("button", has_text="save").count() == 1
        assert page.get_by_text("Error displaying widget").count() == 0

        # Dragging a slider redraws the plot: the widget's Output area gets a new image (a new <img> element).
        image = "document.querySelector('.jp-OutputArea .widget-vbox .widget-output img')"
        before = page.evaluate(f"() => {image}.getAttribute('src')")
        assert before and before.startswith("data:image/png"), f"{name}: no plot in the widget"
        slider = widget.locator(".widget-hslider", has=page.locator("label", has_text=re.compile(
            rf"^{re.escape(slider_label)}$")))
        handle, track = slider.locator(".noUi-handle"), slider.locator(".noUi-target")
        h, t = handle.bounding_box(), track.bounding_box()
        page.mouse.move(h["x"] + h["width"] / 2, h["y"] + h["height"] / 2)
        page.mouse.down()
        page.mouse.move(t["x"] + t["width"] * 0.9, h["y"] + h["height"] / 2, steps=8)
        page.mouse.up()
        page.wait_for_function(f"old => {{ const img = {image}; return img !== null && img.getAttribute('src') !== old; }}",
                               arg=before, timeout=60_000)
        page.screenshot(path=str(shots / f"{name}-2-slider-moved.png"), full_page=True)
        after = page.evaluate(f"() => {image}.getAttribute('src')")
        assert _ink(after) > 0.5 * _ink(before), f"{name}: the redrawn plot is (nearly) blank"

        # Clicking save writes the file (the batch cell of Run All wrote one: it is removed first).
        target = run / saved_name
        assert target.is_file(), f"{name}: Run All's own save did not write {target}"
        target.unlink()
        widget.locator("button", has_text="save").click()
        end = time.monotonic() + 60
        while not target.is_file() and time.monotonic() < end:
            time.sleep(0.2)
        assert target.is_file(), f"{name}: pressing save did not write {target}"
        json.loads(target.read_text())
        page.screenshot(path=str(shots / f"{name}-3-saved.png"), full_page=True)
    finally:
        page.close()
        for kernel in lab.api("/api/kernels"):  # this notebook's kernel: the next one starts alone
            lab.api(f"/api/kernels/{kernel['id']}", method="DELETE")
            lab_run["kernels"].append(kernel["id"])
