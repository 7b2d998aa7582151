"""Running perception_node as a separate process and talking to it over DDS, as a planner would."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import rclpy
import yaml
from ament_index_python.packages import get_package_prefix, get_package_share_directory
from diagnostic_msgs.msg import DiagnosticArray
from polling import wait_for
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String
from synthetic_video import default_scene, render
from videomolmo_ros.msg import CommandStatus, GroundingCommand, ObjectMasks, ObjectTracks, PointedTargets

from videomolmo_ros.io.child_process import stop_child
from videomolmo_ros.io.image_codec import encode_image

SUPPORT_DIR = Path(__file__).parent  # the shared doubles: importable by the node process too
DOUBLES = {
    "pointer_backend": "oracle_doubles:ColorOraclePointerDouble",
    "propagator_backend": "oracle_doubles:ColorOraclePropagatorDouble",
}
NO_BACKENDS = {"pointer_backend": "", "propagator_backend": ""}
# A reliable camera with a deep queue (node side) for a Planner(reliable_images=True): every frame
# sent arrives, so a test can count them exactly instead of allowing for best-effort losses.
RELIABLE_CAMERA = {"cameras.main.reliability": "reliable", "cameras.main.queue_depth": 1000}
RELIABLE_IMAGES = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
# Bound on a node's start-up (torch imported, models loaded) and its first answers: 2-3 s on an idle
# 2-core host, 30 s seen with three test workers and other load on it. Only a failing test waits it out.
NODE_START_S = 120.0


def installed_executable(name: str) -> Path:
    """An executable of this package as `ros2 run videomolmo_ros <name>` starts it."""
    return Path(get_package_prefix("videomolmo_ros")) / "lib" / "videomolmo_ros" / name


def node_executable() -> Path:
    return installed_executable("perception_node")


def installed_params_file() -> Path:
    return Path(get_package_share_directory("videomolmo_ros")) / "config" / "perception.yaml"


class NodeProcess:
    """perception_node started with the installed params file plus overrides; its log kept.

    `params_file=False` starts it without the installed file (as `ros2 run` does: the code's
    defaults); `env` adds to or, with None values, removes from the environment; `ros_args` go
    after the params files (`-p name:=value`). `namespace` puts the node in one (its own topics,
    services and diagnostics names), with both files keyed by its full name, as the launch file does.
    """

    def __init__(
        self,
        log_path: Path,
        overrides: dict[str, object] | None = None,
        params_file: bool = True,
        env: dict[str, str | None] | None = None,
        ros_args: tuple[str, ...] = (),
        namespace: str = "",
    ):
        # Overrides go in a second params file, as a user's would: YAML quoting, no shell quoting.
        key = f"{namespace}/perception_node" if namespace else "perception_node"
        override_file = log_path.with_suffix(".params.yaml")
        override_file.write_text(yaml.safe_dump({key: {"ros__parameters": overrides or {}}}))
        args = [str(node_executable()), "--ros-args"]
        if params_file and namespace:
            shipped = yaml.safe_load(installed_params_file().read_text())["perception_node"]
            shipped_file = log_path.with_suffix(".installed.yaml")
            shipped_file.write_text(yaml.safe_dump({key: shipped}))
            args += ["--params-file", str(shipped_file)]
        elif params_file:
            args += ["--params-file", str(installed_params_file())]
        args += ["--params-file", str(override_file), *ros_args]
        args += ["-r", f"__ns:={namespace}"] if namespace else []
        env = {
            **{k: v for k, v in os.environ.items() if k not in (env or {})},
            **{k: v for k, v in (env or {}).items() if v is not None},
            "PYTHONPATH": f"{SUPPORT_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        }
        env["PYTHONUNBUFFERED"] = "1"
        env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self._log_from = 0  # log() starts here: what came before belongs to an earlier test (a shared node)
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text()[self._log_from :]

    def forget_log(self) -> None:
        """Start log() here: a test of a shared node reads only what it caused."""
        self._log_from = len(self.log_path.read_text())

    def wait_for_log(self, text: str, timeout_s: float = NODE_START_S) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if self.process.poll() is not None:
                return text in self.log()
            time.sleep(0.05)
        return False

    def stop(self) -> int:
        code = stop_child(self.process, lambda: self.process.send_signal(signal.SIGINT), 15)  # as Ctrl-C or launch
        self._log.close()
        return code


def wait_until_answering(planner, timeout_s: float = 90.0) -> None:
    """Until the node under test answers get_state or list_commands (idempotent, so asked again until one does).

    A node just started can be offered in this planner's graph before its services have matched the
    planner's requests, or the entries of a node stopped a moment ago can linger: a request sent then
    is lost and never answered. A transition is not idempotent, so it is sent only once this holds.
    get_state is offered with `autostart: false`, list_commands from configure on (with autostart, at start).
    """
    from lifecycle_msgs.srv import GetState
    from videomolmo_ros.srv import ListCommands

    probes = [
        (planner.node.create_client(GetState, "/perception_node/get_state"), GetState.Request()),
        (planner.node.create_client(ListCommands, "/list_commands"), ListCommands.Request()),
    ]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        wait_for(lambda: any(client.service_is_ready() for client, _ in probes), 1.0)
        for client, request in probes:
            if client.service_is_ready():
                future = client.call_async(request)
                if wait_for(future.done, 2.0):
                    return
                client.remove_pending_request(future)
    raise AssertionError(f"perception_node answered neither get_state nor list_commands within {timeout_s} s")


def call(planner, service_type, name: str, request, timeout_s: float = NODE_START_S):
    """Call a service of the node under test; fail if it is not offered or does not answer in time.

    Sent once the node answers get_state (wait_until_answering): a request is never lost unseen.
    """
    wait_until_answering(planner, timeout_s)
    client = planner.node.create_client(service_type, name)
    assert client.wait_for_service(timeout_sec=timeout_s), f"{name} not offered"
    future = client.call_async(request)
    assert wait_for(future.done, timeout_s), f"{name} did not answer within {timeout_s} s"
    return future.result()


def send_goal(planner, client, goal, **options):
    """`client.send_goal_async(goal, **options)` on the planner's executor thread: from the test's
    thread it races rclpy's own handling of a fast answer (ValueError in ActionClient.remove_future)."""
    task = planner.executor.create_task(lambda: client.send_goal_async(goal, **options))
    assert wait_for(task.done, 30), "the planner's executor did not send the goal"
    return task.result()


def change_state(planner, transition: int) -> bool:
    """A lifecycle transition of the node under test (lifecycle_msgs Transition id); whether it succeeded."""
    from lifecycle_msgs.srv import ChangeState

    request = ChangeState.Request()
    request.transition.id = transition
    # Configure imports and loads the backends (transformers, sam2: seconds, tens on a busy machine).
    return call(planner, ChangeState, "/perception_node/change_state", request, timeout_s=90.0).success


def activate(planner, process: NodeProcess) -> None:
    """Drive `process` (started with `autostart: false`) to active from where it is: configure it if
    unconfigured; deactivate, then activate it if active (with autostart it offers no lifecycle services)."""
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import GetState

    state = call(planner, GetState, "/perception_node/get_state", GetState.Request()).current_state.id
    if state == State.PRIMARY_STATE_UNCONFIGURED:
        assert change_state(planner, Transition.TRANSITION_CONFIGURE), process.log()[-3000:]
    if state == State.PRIMARY_STATE_ACTIVE:
        assert change_state(planner, Transition.TRANSITION_DEACTIVATE), process.log()[-3000:]
    assert change_state(planner, Transition.TRANSITION_ACTIVATE), process.log()[-3000:]


def reactivate(planner, process: NodeProcess) -> None:
    """Deactivate and activate `process` (a shared node, `autostart: false`): every command, goal, buffer,
    counter and propagator state of an earlier test is gone, as in a node just started (models,
    subscriptions, parameters and the track id counter stay)."""
    assert process.process.poll() is None, f"the shared node exited during an earlier test:\n{process.log()[-3000:]}"
    process.forget_log()
    activate(planner, process)


def set_parameter(planner, name: str, value):
    """Set one parameter of the node over DDS, as any peer can; the SetParametersResult."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    return call(planner, SetParameters, "/perception_node/set_parameters", request).results[0]


def image_msg(array, encoding: str, stamp_ns: int, frame_id: str = "test_camera") -> Image:
    """A sensor_msgs/Image of `array`, as a camera driver publishes it."""
    height, width, step, data = encode_image(array, encoding)
    msg = Image(height=height, width=width, encoding=encoding, step=step, data=data)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


class Planner:
    """A test-side node: publishes camera frames and commands, records every output."""

    _count = 0

    def __init__(self, reliable_images: bool = False):
        Planner._count += 1
        self.node = rclpy.create_node(f"test_planner_{Planner._count}")
        self.lock = threading.Lock()
        self.received: dict[str, list] = {"targets": [], "tracks": [], "masks": [], "command_status": []}
        image_qos = RELIABLE_IMAGES if reliable_images else qos_profile_sensor_data
        self.image_pub = self.node.create_publisher(Image, "image", image_qos)
        self.command_pub = self.node.create_publisher(GroundingCommand, "command", 10)
        self.text_pub = self.node.create_publisher(String, "command_text", 10)
        for topic, msg_type in [
            ("targets", PointedTargets),
            ("tracks", ObjectTracks),
            ("masks", ObjectMasks),
            ("command_status", CommandStatus),
        ]:
            subscription = self.node.create_subscription(msg_type, topic, lambda m, t=topic: self._record(t, m), 50)
            if topic == "command_status":
                self._status_sub = subscription
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _record(self, topic: str, msg) -> None:
        with self.lock:
            self.received[topic].append(msg)

    def get(self, topic: str) -> list:
        with self.lock:
            return list(self.received[topic])

    def wait_connected(self, timeout_s: float = NODE_START_S) -> None:
        """Wait until the node under test subscribes to our image and command topics, and its command
        statuses reach us (a command sent before would get a status this planner never sees)."""
        publishers = [self.image_pub, self.command_pub, self.text_pub]
        connected = lambda: all(p.get_subscription_count() > 0 for p in publishers)  # noqa: E731
        assert wait_for(lambda: connected() and self._status_sub.get_publisher_count() > 0, timeout_s), (
            "perception_node never subscribed to image / command / command_text, or never offered command_status"
        )

    def send_image(self, array, encoding: str, stamp_ns: int, frame_id: str = "test_camera") -> None:
        self.image_pub.publish(image_msg(array, encoding, stamp_ns, frame_id))

    def send_command(self, query: str, id: str = "", mode: int = 1, action: int = 0) -> None:
        self.command_pub.publish(GroundingCommand(id=id, query=query, mode=mode, action=action))

    def send_text(self, text: str) -> None:
        self.text_pub.publish(String(data=text))

    def close(self) -> None:
        # Join the spin thread first: a node destroyed while that thread waits on it is only
        # destroyed when the wait ends, on that thread, at a moment no test chose.
        self.executor.shutdown()
        self._thread.join()
        self.node.destroy_node()


class DiagnosticsRecorder:
    """The /diagnostics a node publishes, as a test-side node receives them."""

    def __init__(self, node):
        self._lock = threading.Lock()
        self._arrays: list = []
        node.create_subscription(DiagnosticArray, "/diagnostics", self._record, 10)

    def _record(self, msg) -> None:
        with self._lock:
            self._arrays.append(msg)

    def latest(self):
        """The newest DiagnosticArray received, or None."""
        with self._lock:
            return self._arrays[-1] if self._arrays else None

    def status(self, name: str):
        """The newest status whose name ends with `name` ("main: camera input"), or None."""
        with self._lock:
            for array in reversed(self._arrays):
                for status in array.status:
                    if status.name.endswith(name):
                        return status
        return None

    def values(self, name: str) -> dict[str, str]:
        status = self.status(name)
        return {} if status is None else {kv.key: kv.value for kv in status.values}

    def history(self, name: str) -> list[dict[str, str]]:
        """The values of every status received whose name ends with `name`, oldest first."""
        with self._lock:
            statuses = [status for array in self._arrays for status in array.status if status.name.endswith(name)]
        return [{kv.key: kv.value for kv in status.values} for status in statuses]


FPS = 15.0
START_S = 1000.0


def play(planner, seconds, encoding="rgb8", start_s=START_S, scene=None, until=None):
    """Publish the synthetic video (default_scene unless given) at FPS, for `seconds` or until `until()`
    holds; return {stamp_ns: true masks}."""
    truth = {}
    scene = scene or default_scene()
    for k in range(int(seconds * FPS)):
        if until is not None and until():
            break
        t = k / FPS
        image, masks = render(scene, t)
        stamp_ns = round((start_s + t) * 1e9)
        truth[stamp_ns] = masks
        planner.send_image(image if encoding == "rgb8" else image[:, :, ::-1], encoding, stamp_ns)
        time.sleep(1 / FPS)
    return truth


def stamp_ns(header):
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
