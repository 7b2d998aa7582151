"""The Fast DDS profile for camera-sized messages: shipped, valid, put in effect unless the user chose one."""

import ast
import xml.etree.ElementTree as ElementTree

from ament_index_python.packages import get_package_share_directory

from videomolmo_ros.io.dds_profile import PROFILE, large_data_environment, profile_path

SHARE = get_package_share_directory("videomolmo_ros")


def test_the_installed_profile_gives_large_shared_memory_segments_to_every_participant():
    assert str(profile_path()).startswith(SHARE), "found in the install"
    root = ElementTree.parse(profile_path()).getroot()
    ns = {"dds": "http://www.eprosima.com"}
    [participant] = root.findall("dds:profiles/dds:participant", ns)
    assert participant.get("is_default_profile") == "true"
    sizes = [int(e.text) for e in root.iter("{http://www.eprosima.com}segment_size")]
    assert sizes == [64 * 2**20], "a raw 1080p rgb8 frame (6.2 MB) fits, several times"
    assert participant.find("dds:rtps/dds:useBuiltinTransports", ns).text == "false"


def test_kilted_gets_the_fast_dds_3_variable_and_humble_or_jazzy_the_fast_dds_2_one():
    assert large_data_environment({"PATH": "/bin"}) == {
        "PATH": "/bin",
        "FASTDDS_DEFAULT_PROFILES_FILE": str(profile_path()),
    }
    assert large_data_environment({"ROS_DISTRO": "jazzy"})["FASTRTPS_DEFAULT_PROFILES_FILE"] == str(profile_path())
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in large_data_environment({"ROS_DISTRO": "humble"})


def test_a_profile_the_user_set_is_kept_even_an_empty_one():
    for variable in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
        for value in ("/my/profile.xml", ""):
            assert large_data_environment({variable: value}) == {variable: value}


def test_the_launch_file_starts_the_node_with_the_profile():
    source = (profile_path().parents[1] / "launch" / "perception.launch.py").read_text()
    calls = {getattr(n.func, "id", "") for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)}
    assert {"large_data_environment", "SetEnvironmentVariable"} <= calls
    assert PROFILE == "config/fastdds_large_data.xml"
