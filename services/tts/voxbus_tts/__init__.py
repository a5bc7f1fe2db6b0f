"""voxbus TTS service: stateless clause synthesis streamed back as audio chunks."""
