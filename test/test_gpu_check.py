"""bench/gpu_check, the one command for a CUDA machine, run as a user runs it."""

import subprocess
from pathlib import Path

import pytest
import torch

GPU_CHECK = Path(__file__).resolve().parents[1] / "bench" / "gpu_check"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(GPU_CHECK), *args], capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is here: the full check runs instead")
def test_without_a_gpu_it_says_so_and_exits_0():
    done = run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SKIP: no CUDA GPU" in done.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_every_gpu_path_passes():
    done = run()
    assert done.returncode == 0 and "FAIL" not in done.stdout, done.stdout + done.stderr


def test_the_paths_a_cpu_can_run_pass_there():
    """A smoke run on CPU keeps the script working where CI has no GPU."""
    done = run("--device", "cpu", "--frames", "20")
    assert done.returncode == 0, done.stdout + done.stderr
    passed = [line for line in done.stdout.splitlines() if line.startswith("PASS")]
    assert len(passed) == 5, done.stdout
    assert "SKIP  Molmo2 4-bit: needs a CUDA GPU" in done.stdout
