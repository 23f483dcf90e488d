"""The README's Python snippets run as pasted, in order, in a fresh process on local Spark.

The test extracts every fenced ``python`` block of README.md, joins them into one script (a reader pastes them into
one session, top to bottom) and runs it in a new interpreter, in a scratch directory that sees the repository's
``data/`` and ``conf/`` (as a fresh clone does), so nothing is written into the checkout. A snippet that names an
undefined variable, a removed API or a file that is not shipped fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_snippets() -> list[str]:
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as fh:
        return re.findall(r"^```python\n(.*?)^```", fh.read(), flags=re.MULTILINE | re.DOTALL)


def test_readme_has_python_snippets():
    snippets = readme_snippets()
    assert len(snippets) >= 5
    assert any("get_spark(" in s for s in snippets)  # the first one makes the session the others use


@pytest.mark.readme
def test_readme_python_snippets_run_in_order(tmp_path):
    parts = [f"# --- README snippet {i + 1}\n{code}" for i, code in enumerate(readme_snippets())]
    script = tmp_path / "readme_snippets.py"
    script.write_text("\n".join(parts) + '\nprint("README SNIPPETS OK")\nspark.stop()\n')
    for name in ("data", "conf"):
        os.symlink(os.path.join(REPO, name), tmp_path / name)
    env = dict(os.environ, PYTHONPATH=REPO, SPARKML_DIST_PROGRESS="off", SPARKML_DIST_MASTER="local[2]")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900, env=env)
    assert proc.returncode == 0 and "README SNIPPETS OK" in proc.stdout, proc.stderr[-4000:]
