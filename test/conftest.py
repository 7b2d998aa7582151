"""Test set-up: the test doubles live beside the tests, one torch thread per process."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)
