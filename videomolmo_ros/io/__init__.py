"""Codecs and geometry without ROS: images, masks, mask geometry, depth back-projection; child processes, the
frames shared with one."""
