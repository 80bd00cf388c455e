"""``import unigraph`` stays light: no torch, tensorflow, keras, frontends or backends."""

import subprocess
import sys


def test_import_unigraph_loads_only_the_core():
    code = (
        "import sys, unigraph, unigraph.ir, unigraph.checker, unigraph.flax\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'unigraph.frontends', 'unigraph.backends')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_console_script_prints_help():
    result = subprocess.run([sys.executable, "-m", "unigraph.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "unigraph" in result.stdout
