"""Test set-up: the shared doubles and fixtures live in support/, one torch thread per process, no hub access.

The tests mirror the package: node/, pipeline/, backends/, io/, tools/.
"""

import os
import sys
import tempfile
from pathlib import Path

# Tests never reach the model hub, and never see the user's model cache: set before any import of
# huggingface_hub, which reads these once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="videomolmo-test-hf-")

import torch

sys.path.insert(0, str(Path(__file__).parent / "support"))
torch.set_num_threads(1)

# DDS fixtures (planner, node) for the node tests; an unreachable model hub for the backends' tests.
pytest_plugins = ["ros_fixtures", "offline_hub"]
