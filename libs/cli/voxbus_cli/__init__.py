"""voxbus command line: `voxbus run` (local platform) and `voxbus call` (a test caller)."""
