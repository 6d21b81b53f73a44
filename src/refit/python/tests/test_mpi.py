"""The "mpi" method under mpirun (4 processes per case, see mpi_cases.py)."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import refit

HERE = Path(__file__).resolve().parent
LAUNCHER = shlex.split(os.environ.get("REFIT_MPIEXEC", "")) or [
    "mpirun", "--oversubscribe", "--allow-run-as-root"]

pytestmark = pytest.mark.skipif(not refit.have_mpi(), reason="refit built without MPI")


@pytest.mark.parametrize("case", ["collocated", "non_collocated", "bad_tensor", "stacked", "receiver",
                                  "silent_peer", "several_destinations",
                                  pytest.param("nccl", marks=pytest.mark.skipif(
                                      not refit.have_nccl(), reason="refit built without NCCL")),
                                  pytest.param("cuda_ipc", marks=pytest.mark.skipif(
                                      not refit.have_cuda_ipc(), reason="refit built without CUDA"))])
def test_mpi_case(case):
    out = subprocess.run(LAUNCHER + ["-np", "4", sys.executable, "-m", "mpi4py", str(HERE / "mpi_cases.py"), case],
                         cwd=HERE, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    for r in range(4):
        assert f"rank {r} ok" in out.stdout, out.stdout + out.stderr
