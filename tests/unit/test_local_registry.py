"""The tests' registry is the one they started, even when a run beside them holds its port."""

from __future__ import annotations

from tests.support.registry import LocalRegistry


def test_a_registry_whose_port_is_taken_moves_to_another_and_restarts_on_its_own(tmp_path):
    first = LocalRegistry(tmp_path / "first")
    (tmp_path / "first").mkdir()
    first.start()
    second = LocalRegistry(tmp_path / "second", port=first.port)
    (tmp_path / "second").mkdir()
    try:
        second.start()
        assert second.port != first.port
        second.push_tiny_image("mine", ["1.0.0"])
        assert (second.tags("mine"), first.tags("mine")) == (["1.0.0"], [])
        # A restart (the tests stop a registry to make it "go away") keeps the address.
        port = second.port
        second.stop()
        second.start()
        assert second.port == port and second.tags("mine") == ["1.0.0"]
    finally:
        second.stop()
        first.stop()
