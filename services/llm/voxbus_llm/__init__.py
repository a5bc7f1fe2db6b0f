"""voxbus LLM service: stateless turn workers streaming tokens and clauses for TTS."""
