"""Networks and their files: backbones and the E-SSL model (:mod:`.networks`), the checkpoint
schema (:mod:`.checkpoint`) and importers for the papers' checkpoint formats (:mod:`.importers`).
"""

from .networks import BACKBONES, ESSLModel, build_backbone, model_spec
from . import p4  # noqa: F401,E402  (registers the p4_resnet18 backbone)

__all__ = ["BACKBONES", "ESSLModel", "build_backbone", "model_spec"]
