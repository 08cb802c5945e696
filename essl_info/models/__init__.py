"""Networks and their files: backbones and the E-SSL model (:mod:`.networks`), the checkpoint
schema (:mod:`.checkpoint`) and importers for the papers' checkpoint formats (:mod:`.importers`).
"""

from .networks import BACKBONES, ESSLModel, build_backbone, model_spec

__all__ = ["BACKBONES", "ESSLModel", "build_backbone", "model_spec"]
