"""voxbus command line: `voxbus run` (local platform) and `voxbus call` (a test caller)."""

import os

# The launcher forks its children with a preexec_fn (PDEATHSIG), so fork() runs gRPC's
# at-fork handlers; since grpcio 1.80 the child handler restarts an epoll poller whose fd
# close_fds then closes, and the child aborts before exec (grpc/grpc#43055, seen as a
# service "exiting with -6"). Nothing here forks without exec: gRPC's fork support is off.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
