"""registry: finding, configuring and building pointer / propagator backends by name."""

import dataclasses

import pytest
import torch
from oracle_doubles import ColorOraclePointerDouble, ColorOraclePropagatorDouble, OracleOptions

from videomolmo_ros.backends import registry
from videomolmo_ros.backends.registry import create, option_defaults, resolve
from videomolmo_ros.contracts.interfaces import BackendError, MaskPropagator, NoOptions, Pointer

POINTER_SPEC = "oracle_doubles:ColorOraclePointerDouble"
PROPAGATOR_SPEC = "oracle_doubles:ColorOraclePropagatorDouble"
CPU = torch.device("cpu")


@dataclasses.dataclass(frozen=True)
class FactoryOptions:
    classes: list = dataclasses.field(default_factory=lambda: ["cup", "mug"])
    threshold: float = 0.5


class FactoryPointer(ColorOraclePointerDouble):
    Options = FactoryOptions


def test_resolve_module_colon_class():
    assert resolve(POINTER_SPEC, Pointer) is ColorOraclePointerDouble
    assert resolve(PROPAGATOR_SPEC, MaskPropagator) is ColorOraclePropagatorDouble


def test_resolve_registered_name(monkeypatch):
    monkeypatch.setitem(registry.POINTERS, "oracle", POINTER_SPEC)
    assert resolve("oracle", Pointer) is ColorOraclePointerDouble


def test_unknown_name_error_shows_the_module_class_form_and_registered_names(monkeypatch):
    monkeypatch.setitem(registry.POINTERS, "oracle", POINTER_SPEC)
    with pytest.raises(BackendError) as error:
        resolve("molmo-typo", Pointer)
    message = str(error.value)
    assert "'molmo-typo'" in message
    assert "'package.module:ClassName'" in message
    assert "oracle" in message


def test_unimportable_module_is_a_backend_error_naming_the_module():
    with pytest.raises(BackendError, match="no_such_backend_pkg") as error:
        resolve("no_such_backend_pkg.models:Pointer", Pointer)
    assert isinstance(error.value.__cause__, ImportError)


@pytest.mark.parametrize(
    "spec",
    [
        PROPAGATOR_SPEC,  # a backend of the other kind
        "oracle_doubles:OracleOptions",  # a class, but no backend
        "oracle_doubles:colour_components",  # not a class at all
        "oracle_doubles:NoSuchClass",
    ],
)
def test_class_that_is_not_a_pointer_is_refused(spec):
    with pytest.raises(BackendError, match=r"not a subclass of videomolmo_ros\.contracts\.Pointer"):
        resolve(spec, Pointer)


def test_pointer_is_not_accepted_as_a_propagator():
    with pytest.raises(BackendError, match="MaskPropagator"):
        resolve(POINTER_SPEC, MaskPropagator)


@pytest.mark.parametrize("spec", [":ColorOraclePointerDouble", ".oracle_doubles:ColorOraclePointerDouble"])
def test_malformed_module_part_is_a_backend_error(spec):
    with pytest.raises(BackendError):
        resolve(spec, Pointer)


def test_option_defaults_read_the_options_dataclass():
    assert option_defaults(ColorOraclePointerDouble) == dataclasses.asdict(OracleOptions())
    assert option_defaults(FactoryPointer) == {"classes": ["cup", "mug"], "threshold": 0.5}
    assert option_defaults(ColorOraclePropagatorDouble) == {}  # NoOptions


class DescribedPointer(ColorOraclePointerDouble):
    @dataclasses.dataclass(frozen=True)
    class Options:  # nested, so its source is indented
        beside: str = "x#y"  # the comment beside the field, not the '#' in its default
        # The comment lines right above a field
        # are its description when nothing is beside it.
        above: int = 1
        several: tuple = (
            1,
            2,
        )  # beside the last line of a field written over several
        bare: int = 0


def test_an_options_comment_is_its_parameter_description():
    assert registry.option_descriptions(DescribedPointer) == {
        "beside": "the comment beside the field, not the '#' in its default",
        "above": "The comment lines right above a field are its description when nothing is beside it.",
        "several": "beside the last line of a field written over several",
    }
    assert registry.option_descriptions(FactoryPointer) == {}
    shipped = {**dict.fromkeys(registry.POINTERS, Pointer), **dict.fromkeys(registry.PROPAGATORS, MaskPropagator)}
    for name, kind in shipped.items():
        cls = resolve(name, kind)
        missing = set(option_defaults(cls)) - set(registry.option_descriptions(cls))
        assert not missing, f"{name}: options without a comment saying what they are: {missing}"


def test_create_passes_device_and_options_through():
    backend = create(POINTER_SPEC, Pointer, CPU, {"fail_on": "boom"})
    assert isinstance(backend, ColorOraclePointerDouble)
    assert backend.device == CPU
    assert backend.options == OracleOptions(fail_on="boom")


def test_create_without_options_uses_defaults():
    assert create(POINTER_SPEC, Pointer, CPU).options == OracleOptions()
    propagator = create(PROPAGATOR_SPEC, MaskPropagator, CPU, {})
    assert isinstance(propagator.options, NoOptions)


def test_create_with_unknown_option_names_the_accepted_options():
    with pytest.raises(BackendError) as error:
        create(POINTER_SPEC, Pointer, CPU, {"fail_on": "x", "dealy_s": 1.0})
    message = str(error.value)
    assert "dealy_s" in message
    assert "delay_s" in message and "fail_on" in message


def test_create_with_options_for_a_backend_that_takes_none():
    with pytest.raises(BackendError, match="it takes: none"):
        create(PROPAGATOR_SPEC, MaskPropagator, CPU, {"threshold": 0.3})


@pytest.mark.parametrize("spec", ["none", "None", "NONE", "", " none "])
def test_none_or_empty_chooses_no_backend(spec):
    assert registry.chosen(spec) is None


def test_a_backend_name_is_chosen_as_given():
    assert registry.chosen(POINTER_SPEC) == POINTER_SPEC
