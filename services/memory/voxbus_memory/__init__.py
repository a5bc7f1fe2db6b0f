"""voxbus memory service: each call's conversation in JetStream KV, served as LLM context."""
