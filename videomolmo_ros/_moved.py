"""The module paths of releases before the layout by layer (node/, pipeline/, backends/, io/, tools/).

Importing an old path (`videomolmo_ros.mask_codec`, or `videomolmo_ros.molmo2_pointer:Molmo2Pointer`
as a backend in a params file) gives the module at its new place, with a FutureWarning naming
it. Kept for one release. `videomolmo_ros.pipeline` is the core's package now: the pipeline
itself is `videomolmo_ros.pipeline.pipeline`.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

_LAYERS = {
    "node": "perception_node goal_watch",
    "pipeline": "frame_buffer commands cameras track_manager mask_fusion health counters decode_worker "
    "device debug_overlay",
    "backends": "interfaces point_grammar constrained_decoding",
    "io": "image_codec mask_codec mask_geometry depth_projection",
    "tools": "bag_replay dataset_eval video_dataset metrics scoring",
}
MOVED = {
    f"videomolmo_ros.{name}": f"videomolmo_ros.{layer}.{name}"
    for layer, names in _LAYERS.items()
    for name in names.split()
}
MOVED |= {
    "videomolmo_ros.ros_messages": "videomolmo_ros.node.messages",
    "videomolmo_ros.backend_registry": "videomolmo_ros.backends.registry",
    "videomolmo_ros.molmo2_pointer": "videomolmo_ros.backends.molmo2.pointer",
    "videomolmo_ros.remote_grounding": "videomolmo_ros.backends.molmo2.remote",
    "videomolmo_ros.videomolmo_model": "videomolmo_ros.backends.videomolmo.model",
    "videomolmo_ros.molmo_preprocessing": "videomolmo_ros.backends.videomolmo.preprocessing",
    "videomolmo_ros.videomolmo_pointer": "videomolmo_ros.backends.videomolmo.pointer",
    "videomolmo_ros.sam2_propagator": "videomolmo_ros.backends.sam2.propagator",
}


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and puts the module of its new path in its place in sys.modules."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        return None  # a placeholder, replaced by exec_module

    def exec_module(self, module) -> None:
        new = MOVED[module.__name__]
        warnings.warn(f"{module.__name__} moved to {new}; the old path goes in the next release", FutureWarning, 2)
        sys.modules[module.__name__] = importlib.import_module(new)


def install() -> None:
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
