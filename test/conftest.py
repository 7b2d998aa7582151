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

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "support"))
torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """A pytest-xdist worker (gw0, gw1, ...) gets a DDS domain of its own, ROS_DOMAIN_ID + its index
    (before rclpy starts and any node process inherits the environment): the nodes one worker starts
    never answer another worker's planners.

    Its stuck test is ended by the faulthandler watchdog (pyproject.toml), not by pytest-timeout:
    execnet points a worker's stdout, where pytest-timeout writes its stack dump, at /dev/null; the
    watchdog writes to stderr, which reaches the terminal. A --timeout given stays.
    """
    worker = getattr(config, "workerinput", {}).get("workerid")
    if worker is None:
        return
    os.environ["ROS_DOMAIN_ID"] = str(int(os.environ.get("ROS_DOMAIN_ID", "0")) + int(worker.removeprefix("gw")))
    if config.getvalue("timeout") is None:
        config.option.timeout = 0


# DDS fixtures (planner, node) for the node tests; an unreachable model hub for the backends' tests.
pytest_plugins = ["ros_fixtures", "offline_hub"]
