"""The ROS-free core: frame buffers, commands, cameras, tracking, mask fusion, health and the workers that run them.

Plain Python and torch, testable without ROS. It calls the models only through the interfaces
of videomolmo_ros.contracts, never a backend module. Submodules are imported explicitly (this
file imports nothing).
"""
