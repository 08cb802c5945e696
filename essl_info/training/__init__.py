"""The bundled E-SSL trainer: one frozen config, one training loop, losses, monitors, runtime.

Training never imports :mod:`essl_info.diagnostics`; it writes checkpoints
(:mod:`essl_info.models.checkpoint`) that the diagnostics read.
"""

from .config import TrainConfig
from .trainer import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
