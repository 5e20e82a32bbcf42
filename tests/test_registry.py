import pytest

from bench.errors import RegistryError
from bench.registry import Registry


def test_register_create_and_parameters():
    reg = Registry("widget")

    @reg.register("square")
    def square(side: float = 2.0):
        """A square widget."""
        return side * side

    assert reg.create("square", side=3.0) == 9.0
    assert reg.entry("square").parameters() == {"side": 2.0}
    assert reg.entry("square").description == "A square widget."


def test_duplicate_and_unknown_names_raise_with_suggestions():
    reg = Registry("widget")
    reg.register("square")(lambda: 1)
    with pytest.raises(RegistryError, match="unique"):
        reg.register("square")(lambda: 2)
    with pytest.raises(RegistryError, match="Did you mean square"):
        reg.get("squar")
    with pytest.raises(RegistryError, match="takes parameters"):
        reg.create("square", colour="red")
