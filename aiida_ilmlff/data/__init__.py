"""Data plugins: ``FramesData`` (``ilmlff.frames``), ``MLFFModelData`` (``ilmlff.model``) and ``MDTrajectoryData``
(``ilmlff.trajectory``)."""

from .frames import FramesData
from .model import MLFFModelData
from .trajectory import MDTrajectoryData

__all__ = ('FramesData', 'MDTrajectoryData', 'MLFFModelData')
