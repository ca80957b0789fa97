"""Data plugins: ``FramesData`` (``ilmlff.frames``) and ``MLFFModelData`` (``ilmlff.model``)."""

from .frames import FramesData
from .model import MLFFModelData

__all__ = ('FramesData', 'MLFFModelData')
