"""The ROS-free core: frame buffers, commands, cameras, tracking, mask fusion, health and the workers that run them.

Plain Python and torch, testable without ROS. Submodules are imported explicitly (this file
imports nothing), so a backend can use the frame and command types without loading the workers.
"""
