"""``unigraph.registry.Registry``: each key once, lookups that say what is missing."""

import pytest

from unigraph.registry import Registry


def test_a_key_registers_once_and_lookups_follow_dict():
    table: Registry[str, int] = Registry("op")
    table.register("relu", 1)
    with pytest.raises(ValueError, match="op 'relu' is registered twice"):
        table.register("relu", 2)
    assert table["relu"] == 1 and table.get("relu") == 1 and table.get("gelu") is None
    assert "relu" in table and "gelu" not in table and len(table) == 1
    with pytest.raises(KeyError, match=r"unknown op 'rleu' \(did you mean relu\?\)"):
        table["rleu"]


def test_the_decorator_registers_every_alias_and_returns_the_function():
    table: Registry[str, tuple] = Registry("lowering")

    @table.registers("add", "add_", build=lambda key, fn: (key, fn))
    def add(x, y):
        return x + y

    assert add(1, 2) == 3
    assert table.names() == ["add", "add_"] and table["add_"] == ("add_", add)
