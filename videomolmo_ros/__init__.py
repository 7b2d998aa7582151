"""Language-conditioned video grounding for ROS 2 robots.

Layers, bottom up (each imports only those below it): contracts/ (the types every layer speaks
and the two backend interfaces), io/ (codecs and geometry), pipeline/ (the ROS-free core),
backends/ (models behind the contracts), evaluation/ (scores, datasets, bag reading), node/ (the
ROS 2 shell), tools/ (the command-line programs).
"""
