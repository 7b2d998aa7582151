"""Command-line tools: bag replay and scoring, dataset evaluation, metrics.

Everything here is ROS-free except the ROS side of the bag replay (bag_replay.py).
"""
