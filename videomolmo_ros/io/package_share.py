"""Files the package installs beside its code (msg/, config/): found in the install, else in the source tree."""

from pathlib import Path

PACKAGE = "videomolmo_ros"


def share_path(relative: str) -> Path:
    """`share/videomolmo_ros/<relative>` of the install (ament index) if there, else the source tree's."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        installed = Path(get_package_share_directory(PACKAGE)) / relative
        if installed.exists():
            return installed
    except (ImportError, PackageNotFoundError):
        pass
    source = Path(__file__).resolve().parents[2] / relative
    if not source.exists():
        raise FileNotFoundError(f"cannot find {PACKAGE}'s {relative} (not installed, no source tree)")
    return source
