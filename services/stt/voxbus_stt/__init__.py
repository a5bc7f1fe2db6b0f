"""voxbus STT service: VAD endpointing and streaming transcription of each call it owns."""
