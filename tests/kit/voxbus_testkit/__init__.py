"""Test doubles that tests/ and bench/ share (they live under tests/: not product code).

Installed as its own package (`voxbus-testkit`, by `make install`), so a benchmark imports
it without importing the test suite, and a service started with
`VOXBUS_STT_PROVIDER=voxbus_testkit.instant:stt` finds it from any directory.
"""
