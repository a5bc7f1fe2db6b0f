"""voxbus gateway: caller edges, call ownership, turn state machine and paced playout."""
