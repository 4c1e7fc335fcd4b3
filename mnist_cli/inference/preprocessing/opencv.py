"""OpenCV, imported once for the analysis modules, with its own thread pool turned off."""

from __future__ import annotations

import cv2

# The pictures are small (a canvas is 280x280, a photo is reduced to 1024 across at most):
# OpenCV's pool costs more in hand-offs than it gains there, and `mnist serve` already runs
# one picture per core in its own threads (OpenCV releases the GIL), where a pool per call
# would put 2 x cores threads on the cores. The setting is process-wide; nothing else here uses OpenCV.
cv2.setNumThreads(1)

__all__ = ["cv2"]
