"""Loaded by pytest before any test module: imports voxbus_cli first so its process-wide
settings (gRPC fork support off, see voxbus_cli/__init__.py) precede any gRPC import."""

import voxbus_cli  # noqa: F401
