"""voxbus common library: the bus contract, configuration, telemetry and audio utilities.

Every service imports only this package (never another service).
"""
