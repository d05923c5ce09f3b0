"""Safe model loading and one small adapter per model family."""

from .base import LoadedModel, ModelFamily
from .loading import FAMILIES, load_model

__all__ = ["FAMILIES", "LoadedModel", "ModelFamily", "load_model"]
