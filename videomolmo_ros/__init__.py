"""Language-conditioned video grounding for ROS 2 robots.

Layers: node/ (the ROS 2 shell), pipeline/ (the ROS-free core), backends/ (models behind two
interfaces), io/ (codecs and geometry), tools/ (replay, evaluation, metrics).
"""

from videomolmo_ros import _moved

_moved.install()  # the module paths of the previous release, for one release
