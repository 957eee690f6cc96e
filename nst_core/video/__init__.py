"""Video: stylize a clip frame by frame without flicker, keeping its sound.

* :mod:`.container` — decoding and encoding with PyAV (FFmpeg): video files, animated GIFs,
  folders of frames; the audio stream is carried over;
* :mod:`.flow` — optical flow between input frames (OpenCV's DIS), warping, occlusion;
* :mod:`.loop` — the frame loop: :func:`stylize_frames` (arrays) and :func:`stylize_video`
  (files, resumable), carrying the temporal state into any registered method.

Needs the ``video`` extra (``pip install 'nst-core[video]'``: ``av`` and
``opencv-python-headless``); without it the functions raise one-line :class:`InputError`.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError

EXTRA_MESSAGE = "video needs the 'video' extra: pip install 'nst-core[video]'"


def require_video_extra() -> tuple[Any, Any]:
    """``(av, cv2)``; an :class:`InputError` naming the extra when either is missing."""
    try:
        import av
        import cv2
    except ImportError as error:
        raise InputError(f"{EXTRA_MESSAGE} ({error.name or error} is missing)") from None
    return av, cv2


def __getattr__(name: str) -> Any:  # the loop imports torch and the engine: only when asked for
    if name in ("VideoOptions", "VideoResult", "stylize_frames", "stylize_video", "FrameLoop"):
        from . import loop

        return getattr(loop, name)
    raise AttributeError(name)


__all__ = ["EXTRA_MESSAGE", "FrameLoop", "VideoOptions", "VideoResult", "require_video_extra", "stylize_frames",
           "stylize_video"]
