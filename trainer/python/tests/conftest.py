"""Tests run without a host of their own unless they ask for one: watch() would otherwise start the
muonscope CLI when it finds one (docs/python.md §4), which depends on the machine, not the test.
test_autostart.py clears MUONSCOPE_NO_HOST where it tests exactly that."""
import pytest


@pytest.fixture(autouse=True)
def _no_own_host(monkeypatch):
    monkeypatch.setenv("MUONSCOPE_NO_HOST", "1")
