"""How every tool ends: one line on stderr for bad input or an interruption, never a traceback; and the
NAME=VALUE options they share.

`run_tool` runs a tool's body and turns the errors that describe its input or environment (a bad
file, a bag that is damaged, a node that never answered, a full disk) into `<tool>: error:
<problem>` and exit status 1; Ctrl-C or SIGTERM into `<tool>: interrupted` and 130. The notes an
error collected on its way out (outputs removed, commands stopped) follow on the same line. A
traceback is left for what is a bug of the tool itself.
"""

import argparse
import re
import signal
import sys
import threading
from collections.abc import Callable

from videomolmo_ros.evaluation.bag_files import ReplayError
from videomolmo_ros.evaluation.video_dataset import DatasetError
from videomolmo_ros.io.camera_calibration import CalibrationError
from videomolmo_ros.io.image_files import ImageFileError
from videomolmo_ros.io.video_source import VideoSourceError

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130
# What a user can act on; each message names the file, topic or setting at fault. A tool adds its own
# (run_tool's `errors`): these are the ones every tool meets without importing torch.
INPUT_ERRORS = (ReplayError, DatasetError, ImageFileError, VideoSourceError, CalibrationError, OSError)


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt


def run_tool(prog: str, body: Callable[[], int], errors: tuple[type[Exception], ...] = ()) -> int:
    """`body()`'s exit status; on bad input (INPUT_ERRORS, `errors`) or an interruption, one line saying so
    and 1 or 130.

    SIGTERM is handled as Ctrl-C while the body runs, so a tool stopped by a launch file or a test
    cleans up (outputs, the commands it started) as it does on Ctrl-C.
    """
    main_thread = threading.current_thread() is threading.main_thread()  # only it may set signal handlers
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        return body()
    except (*INPUT_ERRORS, *errors) as error:
        print(f"{prog}: error: {_with_notes(str(error), error)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as interrupt:
        print(f"{prog}: {_with_notes('interrupted', interrupt)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _with_notes(text: str, error: BaseException) -> str:
    return "; ".join([text, *getattr(error, "__notes__", ())])


def named(value: str) -> Callable[[str], tuple[str, str]]:
    """The argparse type of a camera's NAME=`value` option (--camera): NAME a ROS name token (topics
    are named after it)."""

    def parse(text: str) -> tuple[str, str]:
        name, sep, given = text.partition("=")
        if not sep or not given or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise argparse.ArgumentTypeError(f"{text!r}: use NAME={value}, NAME letters, digits and _")
        return name, given

    return parse
