"""voxbus STT service: VAD endpointing and streaming transcription of each call it owns."""

import os

# numpy's BLAS threads fight CTranslate2's for the cores: Whisper's mel step took 16 ms
# instead of 1 ms with them. Set before the service loads numpy; the environment still wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
