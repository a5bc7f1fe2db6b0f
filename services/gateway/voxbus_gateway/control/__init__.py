"""The gRPC control API (proto/voxbus/v1/control.proto), served by every gateway replica."""
