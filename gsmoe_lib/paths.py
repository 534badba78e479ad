"""Where the project lives: the folder that holds notebooks/, data/, runs/ and figures/ (an editable install).

Relative paths given to notebooks and commands resolve against PROJECT_ROOT (`notebook.resolve_path`), so a
notebook opened in JupyterLab from notebooks/ and `gsmoe reproduce` from the project root read the same files.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
