"""Evaluation without ROS: scores (metrics, mask_metrics, clear_mot, scoring), datasets and their runs
(video_dataset, lockstep_run, dataset_evaluation), bags and their ground truth (bag_files), reports
(eval_report, demo_report) and the demo's synthetic scene (demo_scene).

The command-line programs in videomolmo_ros.tools, the benchmarks and the tests use it.
"""
