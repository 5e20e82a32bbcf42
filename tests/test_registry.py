import pytest

from bench.errors import RegistryError
from bench.registry import Registry


def test_register_create_and_parameters():
    reg = Registry("widget")

    @reg.register("square", sides=4)
    def square(side: float = 2.0):
        """A square widget."""
        return side * side

    assert reg.create("square", side=3.0) == 9.0
    assert reg.entry("square").parameters() == {"side": 2.0}
    assert reg.entry("square").description == "A square widget."
    assert reg.entry("square").describe() == {"name": "square", "description": "A square widget.",
                                              "parameters": {"side": 2.0}, "tags": {"sides": 4}}


def test_values_can_be_registered_and_have_no_parameters():
    reg = Registry("constant")
    reg.add("pi", 3.14159, "the circle constant", exact=False)
    assert reg.get("pi") == 3.14159
    assert reg.entry("pi").describe() == {"name": "pi", "description": "the circle constant", "parameters": {},
                                          "tags": {"exact": False}}


def test_duplicate_and_unknown_names_raise_with_suggestions():
    reg = Registry("widget")
    reg.register("square")(lambda: 1)
    with pytest.raises(RegistryError, match="unique"):
        reg.register("square")(lambda: 2)
    with pytest.raises(RegistryError, match="unique"):
        reg.add("square", 3)
    with pytest.raises(RegistryError, match="Did you mean 'square'"):
        reg.get("squar")
    with pytest.raises(RegistryError, match="takes parameters"):
        reg.create("square", colour="red")


def test_unknown_name_lists_every_name_only_when_nothing_is_close():
    reg = Registry("task")
    for name in ("xray-heart", "ct-lung", "mri-brain"):
        reg.register(name)(lambda: None)
    with pytest.raises(RegistryError) as close:
        reg.get("xray-hart")
    assert "Did you mean 'xray-heart'?" in str(close.value)
    assert "ct-lung" not in str(close.value)  # a typo gets its fix, not the whole list
    with pytest.raises(RegistryError) as far:
        reg.get("pet")
    assert "Did you mean" not in str(far.value)
    assert "must be one of ['ct-lung', 'mri-brain', 'xray-heart'], but got 'pet'" in str(far.value)
