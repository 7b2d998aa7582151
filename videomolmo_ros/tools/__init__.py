"""The command-line programs: replay_bag, evaluate_dataset, video_publisher, video_to_bag, videomolmo_demo.

Each reads its arguments, calls the library (evaluation/, io/, the pipeline) and prints; the ROS
pieces two programs share are frame_publisher.py, replay_node.py and ros_spin.py.
"""
