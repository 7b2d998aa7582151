"""Language-conditioned video grounding for ROS 2 robots."""
