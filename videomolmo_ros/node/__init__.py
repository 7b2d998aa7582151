"""The ROS 2 shell: the lifecycle node and its parts (parameters, camera inputs, planner API, outputs, diagnostics).

The only layer that imports rclpy (with the ROS side of tools/): it converts messages, calls the
pipeline and publishes what the pipeline produces.
"""
