"""The Python examples (examples/python/) run and print bit-exact results."""

import os
import shlex
import subprocess
import sys

import pytest

import refit
from conftest import ROOT

EXAMPLES = ROOT / "examples" / "python"
LAUNCHER = shlex.split(os.environ.get("REFIT_MPIEXEC", "")) or [
    "mpirun", "--oversubscribe", "--allow-run-as-root"]
PY = [sys.executable]
MPI_PY = [sys.executable, "-m", "mpi4py"]  # an exception aborts every rank


def run(cmd):
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "WRONG" not in out.stdout and "PASS" in out.stdout, out.stdout
    return out.stdout


def test_refit_local():
    assert run(PY + [str(EXAMPLES / "refit_local.py")]).count("bit-exact") >= 8


def test_refit_pools():
    assert run(PY + [str(EXAMPLES / "refit_pools.py")]).count("bit-exact") == 12


@pytest.mark.skipif(not refit.have_mpi(), reason="refit built without MPI")
def test_refit_mpi():
    out = run(LAUNCHER + ["-np", "4"] + MPI_PY + [str(EXAMPLES / "refit_mpi.py")])
    assert out.count("bit-exact") == 4


@pytest.mark.skipif(not refit.have_mpi(), reason="refit built without MPI")
def test_refit_mpmd():
    script = str(EXAMPLES / "refit_mpmd.py")
    out = run(LAUNCHER + ["-np", "2"] + MPI_PY + [script, "trainer", ":", "-np", "2"]
              + MPI_PY + [script, "inference"])
    assert out.count("bit-exact") == 4
