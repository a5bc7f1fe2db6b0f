"""`python -m voxbus_cli` = the `voxbus` command."""

from voxbus_cli.main import app

app(prog_name="voxbus")
