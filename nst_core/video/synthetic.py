"""A clip made from a still photo, panned and zoomed, with a sine tone: for tests, benchmarks and
demonstrations of :mod:`nst_core.video` (real motion, known frame count, rate and sound)."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np

from . import require_video_extra


def pan_zoom(photo: np.ndarray, frames: int, hw: tuple[int, int], *, pan: float = 0.25,
             zoom: float = 1.25) -> list[np.ndarray]:
    """``frames`` views of ``photo`` (``H×W×3`` float) at ``hw``: a window with ``hw``'s aspect that
    moves across ``pan`` of the photo's width and narrows by ``zoom`` over the clip."""
    from ..image import resize_to

    height, width = photo.shape[:2]
    aspect = hw[1] / hw[0]
    views = []
    for t in range(frames):
        f = t / max(1, frames - 1)
        window_w = min(width * (1 - pan), height * aspect) / (1 + (zoom - 1) * f)
        window_h = window_w / aspect
        left = (width - window_w) * (0.1 + 0.8 * f * pan / max(pan, 1e-6)) if pan else (width - window_w) / 2
        top = (height - window_h) / 2
        crop = photo[int(top): int(top + window_h), int(left): int(left + window_w)]
        views.append(resize_to(crop, hw))
    return views


def write_clip(path: str | os.PathLike[str], frames: list[np.ndarray], *, rate: int = 12,
               codec: str = "libx264", tone: float | None = 440.0, audio_rate: int = 44100) -> None:
    """Encode ``frames`` (float ``H×W×3``, even sides) at ``rate`` fps, with a sine ``tone`` (Hz) in
    AAC as long as the clip (``None``: silent)."""
    av, _ = require_video_extra()
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=rate)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        audio = out.add_stream("aac", rate=audio_rate) if tone else None
        for image in frames:
            pixels = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if audio is not None:
            samples = int(audio_rate * len(frames) / rate)
            wave = (0.3 * np.sin(2 * np.pi * tone * np.arange(samples) / audio_rate)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = wave[None, start:start + 1024]
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate = audio_rate
                frame.time_base = Fraction(1, audio_rate)
                frame.pts = start
                for packet in audio.encode(frame):
                    out.mux(packet)
            for packet in audio.encode(None):
                out.mux(packet)
