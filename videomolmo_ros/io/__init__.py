"""Codecs and geometry without ROS: images, masks, mask geometry, depth back-projection; stopping a child process."""
