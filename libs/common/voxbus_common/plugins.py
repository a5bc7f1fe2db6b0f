"""Third-party providers by import path: `VOXBUS_STT_PROVIDER=my_pkg.stt:make` loads
`make(settings)` from `my_pkg.stt`. Built-in names stay short ("whisper", "piper", ...);
anything with a colon is a plugin, the way LiveKit Agents plugins are separate packages."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

S = TypeVar("S")  # the settings of the service making the provider (config.SERVICES)


class PluginError(ValueError):
    """A provider spec that cannot be loaded; the message says which part is wrong."""


def is_plugin(spec: str) -> bool:
    return ":" in spec


def load_plugin(spec: str, settings: Any) -> Any:
    """Import `module:factory` and call `factory(settings)`; errors name the spec."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise PluginError(f"provider {spec!r}: expected 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"provider {spec!r}: cannot import {module_name} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise PluginError(f"provider {spec!r}: {module_name} has no callable {attr!r}")
    return factory(settings)


def make_provider(setting: str, spec: str, builtins: Mapping[str, Callable[[S], Any]],
                  settings: S) -> Any:
    """A built-in provider by name or a plugin by import path; unknown names list the known."""
    if is_plugin(spec):
        return load_plugin(spec, settings)
    factory = builtins.get(spec)
    if factory is None:
        raise ValueError(f"unknown {setting} {spec!r} "
                         f"(known: {', '.join(builtins)}, or 'module:factory')")
    return factory(settings)
