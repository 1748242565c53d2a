"""Tests for genbench/registry.py: validated name -> object registries.

The mechanics use fresh Registry("things") objects so the global registries are never
touched; only the builtins test looks at the global ones (read-only).
"""

from __future__ import annotations

import pytest

from genbench.errors import ConfigError, GenbenchError, UnknownNameError
from genbench.catalog import load_builtins, registry_for
from genbench.registry import REGISTRIES, Registry


@pytest.fixture
def things() -> Registry:
    return Registry("things")


def test_register_and_get(things):
    obj = object()
    assert things.register("alpha", obj) is obj
    assert things.get("alpha") is obj
    assert "alpha" in things
    assert "beta" not in things
    assert len(things) == 1


def test_decorator_form_registers_and_returns_the_object(things):
    @things.register("widget")
    class Widget:
        pass

    @things.register("make-gadget")
    def make_gadget():
        return 42

    assert isinstance(Widget, type) and Widget.__name__ == "Widget"  # not replaced
    assert things.get("widget") is Widget
    assert things.get("make-gadget") is make_gadget
    assert make_gadget() == 42


def test_names_are_sorted_and_iterable(things):
    for name in ("zeta", "alpha", "mid_1", "v2.0"):
        things.register(name, object())
    assert things.names() == ["alpha", "mid_1", "v2.0", "zeta"]
    assert list(things) == things.names()
    assert len(things) == 4


def test_unknown_name_suggests_closest_and_list_hint(things):
    for name in ("vae", "ae", "iwae"):
        things.register(name, object())
    with pytest.raises(UnknownNameError) as info:
        things.get("vea")
    message = str(info.value)
    assert "'vea'" in message
    assert "Did you mean" in message and "'vae'" in message
    assert "genbench list things" in message
    # An unknown name is a user error: ConfigError (exit code 2 in the CLI).
    assert isinstance(info.value, ConfigError) and isinstance(info.value, GenbenchError)


def test_unknown_name_without_close_match_still_lists_registered(things):
    things.register("vae", object())
    with pytest.raises(UnknownNameError) as info:
        things.get("xxxxxxxxxxxx")
    message = str(info.value)
    assert "Did you mean" not in message
    assert "vae" in message  # the registered names are listed
    assert "genbench list things" in message


def test_unknown_name_in_empty_registry(things):
    with pytest.raises(UnknownNameError, match="genbench list things"):
        things.get("anything")


def test_duplicate_name_with_different_object_is_rejected(things):
    first, second = object(), object()
    things.register("dup", first)
    with pytest.raises(ConfigError, match="dup"):
        things.register("dup", second)
    assert things.get("dup") is first  # the original entry survives


def test_duplicate_via_decorator_is_rejected(things):
    things.register("dup", object())
    with pytest.raises(ConfigError):
        @things.register("dup")
        def other():  # pragma: no cover - never registered
            pass


def test_reregistering_same_object_is_fine(things):
    obj = object()
    things.register("same", obj)
    assert things.register("same", obj) is obj
    assert things.get("same") is obj
    assert len(things) == 1


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("VAE", id="uppercase"),
        pytest.param("Vae", id="capitalised"),
        pytest.param("my model", id="space"),
        pytest.param(" vae", id="leading-space"),
        pytest.param("vae ", id="trailing-space"),
        pytest.param("vae\n", id="trailing-newline"),
        pytest.param("", id="empty"),
        pytest.param("-vae", id="leading-dash"),
        pytest.param("_vae", id="leading-underscore"),
        pytest.param("va/e", id="slash"),
        pytest.param(3, id="not-a-string"),
    ],
)
def test_invalid_names_are_rejected(things, name):
    with pytest.raises(ConfigError):
        things.register(name, object())
    assert len(things) == 0


@pytest.mark.parametrize("name", ["vae", "toy2d-ring8", "fashion-mnist", "a_b", "v1.2", "0x"])
def test_valid_names_are_accepted(things, name):
    obj = object()
    things.register(name, obj)
    assert things.get(name) is obj


def test_unregister(things):
    first, second = object(), object()
    things.register("gone", first)
    things.unregister("gone")
    assert "gone" not in things
    assert len(things) == 0
    with pytest.raises(UnknownNameError):
        things.get("gone")
    # After unregistering, the name can take a different object.
    things.register("gone", second)
    assert things.get("gone") is second


def test_unregister_unknown_name_is_a_no_op(things):
    things.register("keep", object())
    things.unregister("never-registered")
    assert things.names() == ["keep"]


def test_registries_are_independent():
    a, b = Registry("things"), Registry("things")
    a.register("only-in-a", object())
    assert "only-in-a" not in b


def test_registry_for_unknown_kind_suggests_models():
    with pytest.raises(UnknownNameError) as info:
        registry_for("modls")
    message = str(info.value)
    assert "'modls'" in message
    assert "'models'" in message


def test_registry_for_known_kind_returns_the_global_registry():
    assert registry_for("models") is REGISTRIES["models"]
    assert registry_for("models").kind == "models"


EXPECTED_BUILTINS = {
    "datasets": {
        "digits", "shapes", "photos", "toy2d-ring8", "toy2d-grid25",
        "mnist", "fashion-mnist", "cifar10", "folder", "npz", "waves",
    },
    "models": {"ae", "vae", "pixelcnn", "wavenet", "realnvp", "glow"},
    "losses": {"recon", "elbo", "nll"},
    "metrics": {"reconstruction", "elbo", "likelihood", "anomaly", "ar_samplers"},
    "kernels": {"reparam_kl"},
    "suites": {"quick"},
    "trainers": {"single", "adversarial", "vaegan"},
    "reproductions": {"dirac-gan"},
}


def test_registry_kinds_match_cli_contract():
    assert set(REGISTRIES) == {
        "datasets", "models", "losses", "regularizers", "metrics", "kernels", "suites", "trainers", "benches",
        "reproductions",
    }


@pytest.mark.parametrize("kind", sorted(EXPECTED_BUILTINS))
def test_builtins_are_registered(kind):
    load_builtins()
    registered = set(REGISTRIES[kind].names())
    missing = EXPECTED_BUILTINS[kind] - registered
    assert not missing, f"{kind} lacks builtin entries {sorted(missing)}"


def test_load_builtins_is_idempotent():
    load_builtins()
    before = {kind: r.names() for kind, r in REGISTRIES.items()}
    load_builtins()
    after = {kind: r.names() for kind, r in REGISTRIES.items()}
    assert before == after
