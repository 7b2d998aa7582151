# Source this file to use the project's environment in a shell:  . scripts/env.sh
# It activates the project's venv (ROS 2 Kilted from PyPI wheels, torch, ...; made by
# scripts/setup) and the colcon install/.
_vmr_root=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
# The venv lives outside the source tree: CMake refuses exported include folders (numpy's)
# that lie inside the package being built. One venv per clone, keyed by the clone's path.
VIRTUAL_ENV=${VIDEOMOLMO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/videomolmo_ros/venv-$(printf %s "$_vmr_root" | sha256sum | cut -c1-12)}
export VIRTUAL_ENV
export PATH="$VIRTUAL_ENV/bin:$PATH"
# The venv is the ROS prefix (like /opt/ros/kilted): CMake and ament find packages there.
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
# Raw camera frames above 512 KB are lost at camera rate under Fast DDS's defaults: every process
# of this shell publishes with larger shared-memory segments (docs/large-images.md),
# unless a profile of your own is set already. Kilted's Fast DDS 3 reads FASTDDS_*.
if [ -z "${FASTDDS_DEFAULT_PROFILES_FILE+set}" ] && [ -z "${FASTRTPS_DEFAULT_PROFILES_FILE+set}" ]; then
  export FASTDDS_DEFAULT_PROFILES_FILE="$_vmr_root/config/fastdds_large_data.xml"
fi
# ROS 2 launch (`ros2 launch`, launch_testing) where ROS 2 is not installed from apt: built from
# ../shared/ros2-launch by scripts/setup-ros2-launch into a folder next to the venv, keyed by the venv,
# the sources' versions and that script (VIDEOMOLMO_ROS2_LAUNCH_SRC names another source folder).
VIDEOMOLMO_ROS2_LAUNCH_SRC=${VIDEOMOLMO_ROS2_LAUNCH_SRC:-$_vmr_root/../shared/ros2-launch}
export VIDEOMOLMO_ROS2_LAUNCH_SRC
if [ -d "$VIDEOMOLMO_ROS2_LAUNCH_SRC" ]; then
  _vmr_key=$({ echo "$VIRTUAL_ENV"; cat "$_vmr_root/scripts/setup-ros2-launch" \
    $(find "$VIDEOMOLMO_ROS2_LAUNCH_SRC" -name package.xml -o -name setup.py -o -name README.md | sort); } \
    | sha256sum | cut -c1-12)
  export VIDEOMOLMO_ROS2_LAUNCH="$VIRTUAL_ENV-ros2-launch-$_vmr_key"
  if [ -f "$VIDEOMOLMO_ROS2_LAUNCH/.installed" ]; then
    for _vmr_site in "$VIDEOMOLMO_ROS2_LAUNCH"/install/lib/python3*/site-packages; do
      export PYTHONPATH="$VIDEOMOLMO_ROS2_LAUNCH/site:$_vmr_site${PYTHONPATH:+:$PYTHONPATH}"
    done
    export PATH="$VIDEOMOLMO_ROS2_LAUNCH/site/bin:$PATH"
    export AMENT_PREFIX_PATH="$VIDEOMOLMO_ROS2_LAUNCH/install:$VIDEOMOLMO_ROS2_LAUNCH/site:$AMENT_PREFIX_PATH"
    export LD_LIBRARY_PATH="$VIDEOMOLMO_ROS2_LAUNCH/install/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  unset _vmr_key _vmr_site
else
  unset VIDEOMOLMO_ROS2_LAUNCH
fi
if [ -f "$_vmr_root/install/setup.sh" ]; then
  # colcon's setup scripts read unset variables: relax `set -u` around them.
  case $- in *u*) _vmr_nounset=1; set +u ;; *) _vmr_nounset= ;; esac
  COLCON_CURRENT_PREFIX="$_vmr_root/install" . "$_vmr_root/install/setup.sh"
  [ -z "$_vmr_nounset" ] || set -u
  # The node's executables, runnable as plain processes (what `ros2 run` would start).
  export PATH="$_vmr_root/install/videomolmo_ros/lib/videomolmo_ros:$PATH"
  unset _vmr_nounset
fi
unset _vmr_root
