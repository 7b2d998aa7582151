"""A tool's rclpy node: its own context, spun on a background thread, shut down so the process exits cleanly.

Closing shuts the executor down AND joins its spin thread before the context goes: an executor
thread still alive at interpreter exit is a joinable C++ std::thread destroyed, which aborts the
process ("terminate called without an active exception", exit code 134) after a complete run.

Signals stay Python's (rclpy installs none): Ctrl-C is a KeyboardInterrupt in the main thread
(tools/tool_main.py) while the context is still valid, so the tool stops what it started in the
node and closes in order; rclpy's own handler would shut the context down from under that way out.
A tool started with SIGINT ignored (a background job) keeps ignoring it; SIGTERM still stops it.
"""

import threading

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from videomolmo_ros.io.dds_profile import use_large_data_profile


class SpunNode:
    """`node` in a context of its own; `spin()` starts serving its callbacks, `close()` ends everything."""

    def __init__(self, name: str, namespace: str | None = None, args: list[str] | None = None):
        use_large_data_profile()  # before the context creates this process's DDS participant
        self.context = rclpy.Context()
        rclpy.init(args=args, context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        try:
            self.node = rclpy.create_node(name, namespace=namespace, context=self.context)
        except Exception:
            self.context.try_shutdown()
            raise
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, name=f"{name}-spin", daemon=True)

    def spin(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._executor.shutdown()
        if self._thread.is_alive():
            self._thread.join()
        self.node.destroy_node()
        self.context.try_shutdown()

    def __enter__(self) -> "SpunNode":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
