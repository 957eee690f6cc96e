"""Clips in and out: video files and animated GIFs through PyAV (FFmpeg), folders of frames.

:func:`probe` reads a clip once, whole, before any work: a missing, corrupt or truncated file is a
one-line :class:`InputError` then, not after an hour of painting. :func:`read_frames` decodes it
again, frame by frame, as ``H×W×3`` float32 arrays (and ``H×W`` alpha where the clip has
transparency, e.g. a GIF). :func:`check_output` resolves the output's kind, codec and quality and
refuses what cannot be written; :func:`encode` writes the finished frames as a video, a GIF or
(for a folder) nothing more, carrying the input's audio stream over — copied as it is where the
container takes its codec, else re-encoded — atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..atomic_file import write_atomically
from ..errors import InputError
from ..message_text import quote_path
from . import require_video_extra

#: Output suffix → (FFmpeg container format, default codec).
VIDEO_FORMATS = {
    ".mp4": ("mp4", "libx264"), ".m4v": ("mp4", "libx264"), ".mov": ("mov", "libx264"),
    ".mkv": ("matroska", "libx264"), ".webm": ("webm", "libvpx-vp9"), ".avi": ("avi", "mpeg4"),
}
GIF_SUFFIX = ".gif"
#: Default quality (constant rate factor) of the codecs that take one: visually near-lossless.
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 31, "libvpx": 10, "libsvtav1": 30}
#: Audio codecs each container takes as they are (else the audio is re-encoded to the second item).
AUDIO_COPY = {
    "mp4": ({"aac", "mp3", "alac", "ac3", "opus", "flac"}, "aac"),
    "mov": ({"aac", "mp3", "alac", "ac3", "pcm_s16le"}, "aac"),
    "matroska": (None, "aac"),  # takes anything
    "webm": ({"opus", "vorbis"}, "libopus"),
    "avi": ({"mp3", "ac3", "pcm_s16le"}, "libmp3lame"),
}
#: A folder of frames read as a clip has this frame rate unless one is given.
DEFAULT_FOLDER_RATE = Fraction(24)
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")


@dataclass(frozen=True, kw_only=True)
class ClipInfo:
    """What :func:`probe` found in a clip."""

    path: Path
    frames: int
    rate: Fraction
    #: ``(height, width)`` of the frames.
    hw: tuple[int, int]
    #: Whether some frame is not fully opaque (an animated GIF with transparency, PNG frames …).
    alpha: bool
    #: The audio stream's codec name, or ``None`` (silent clip, GIF, folder).
    audio: str | None
    #: Frame files of a folder clip (empty for a file).
    files: tuple[Path, ...] = ()


@dataclass(frozen=True, kw_only=True)
class OutputSpec:
    """Where and how :func:`encode` writes a clip."""

    path: Path
    #: ``video``, ``gif`` or ``folder`` (the finished frames are the output).
    kind: str
    format: str = ""
    codec: str = ""
    crf: int | None = None


def _av_error(name: str, error: BaseException) -> InputError:
    text = getattr(error, "strerror", None) or " ".join(str(error).split()) or type(error).__name__
    if "invalid data" in text.lower():
        text += " (corrupt, truncated, or not a video)"
    return InputError(f"cannot read video {name}: {text}")


def probe(path: str | os.PathLike[str], *, rate: float | None = None) -> ClipInfo:
    """Read the whole clip once (a file, or a folder of frames in name order) and describe it."""
    clip = Path(path)
    name = quote_path(clip)
    if clip.is_dir():
        return _probe_folder(clip, name, rate)
    if not clip.exists():
        raise InputError(f"cannot read video {name}: no such file")
    if not clip.is_file():
        raise InputError(f"cannot read video {name}: not a regular file")
    av, _ = require_video_extra()
    try:
        with av.open(str(clip)) as container:
            if not container.streams.video:
                raise InputError(f"cannot read video {name}: it has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
            expected = stream.frames
            count, alpha, hw = 0, False, None
            for frame in container.decode(stream):
                if hw is None:
                    hw = (frame.height, frame.width)
                if not alpha and _may_have_alpha(frame.format):
                    alpha = bool((frame.to_ndarray(format="rgba")[..., 3] < 255).any())
                count += 1
            frame_rate = stream.average_rate or stream.guessed_rate or DEFAULT_FOLDER_RATE
    except InputError:
        raise
    except (av.FFmpegError, ValueError, OSError) as error:
        raise _av_error(name, error) from None
    if count == 0 or hw is None:
        raise InputError(f"cannot read video {name}: no frame could be decoded (corrupt or empty)")
    if expected and count < expected:
        raise InputError(f"cannot read video {name}: truncated ({count} of {expected} frames decode)")
    if rate is not None:
        frame_rate = Fraction(rate).limit_denominator(1001)
    return ClipInfo(path=clip, frames=count, rate=Fraction(frame_rate), hw=hw, alpha=alpha, audio=audio)


def _probe_folder(folder: Path, name: str, rate: float | None) -> ClipInfo:
    from ..image import load_image

    files = tuple(sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES))
    if not files:
        raise InputError(f"folder {name} holds no frames ({', '.join(FRAME_SUFFIXES)})")
    first = load_image(files[0])
    frame_rate = Fraction(rate).limit_denominator(1001) if rate else DEFAULT_FOLDER_RATE
    return ClipInfo(path=folder, frames=len(files), rate=frame_rate, hw=first.rgb.shape[:2],
                    alpha=first.alpha is not None, audio=None, files=files)


def read_frames(info: ClipInfo) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """The clip's frames in order: ``(rgb, alpha)``, float32 in ``[0, 1]`` (alpha ``None`` when the
    clip has none)."""
    if info.files:
        from ..image import load_image, resize_to

        for file in info.files:
            loaded = load_image(file)
            rgb, alpha = loaded.rgb, loaded.alpha
            if rgb.shape[:2] != info.hw:  # frames of a folder may differ: all take the first's size
                rgb = resize_to(rgb, info.hw)
                alpha = None if alpha is None else resize_to(alpha, info.hw)
            if info.alpha and alpha is None:
                alpha = np.ones(info.hw, np.float32)
            yield rgb, (alpha if info.alpha else None)
        return
    av, _ = require_video_extra()
    name = quote_path(info.path)
    try:
        with av.open(str(info.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if info.alpha:
                    rgba = frame.to_ndarray(format="rgba").astype(np.float32) / 255.0
                    yield rgba[..., :3], rgba[..., 3]
                else:
                    yield frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0, None
    except (av.FFmpegError, ValueError, OSError) as error:
        raise _av_error(name, error) from None


def check_output(path: str | os.PathLike[str], *, codec: str | None = None, crf: int | None = None,
                 protect: Iterable[Path] = ()) -> OutputSpec:
    """The output's kind (a suffix of :data:`VIDEO_FORMATS`, ``.gif``, else a folder), its codec
    (``codec`` or the container's default) and quality; an :class:`InputError` for an unknown codec,
    a codec without video, an output that is an input, or a folder that cannot be written."""
    from ..file_checks import folder_problem, is_protected

    out = Path(path)
    name = quote_path(out)
    suffix = out.suffix.lower()
    if crf is not None and not (0 <= crf <= 63):
        raise InputError(f"--crf must be 0 … 63 (lower is better), got {crf}")
    if is_protected(out, protect):
        raise InputError(f"refusing to overwrite input file {name}; choose another output path")
    if suffix not in VIDEO_FORMATS and suffix != GIF_SUFFIX:
        if out.exists() and not out.is_dir():
            raise InputError(f"cannot write {name}: not a video type ({', '.join(sorted(VIDEO_FORMATS))}, .gif) "
                             "nor a folder")
        if codec:
            raise InputError(f"--codec needs a video file output ({', '.join(sorted(VIDEO_FORMATS))}); {name} "
                             "is a folder of frames")
        return OutputSpec(path=out, kind="folder")
    if out.is_dir():
        raise InputError(f"cannot write {name}: it is a folder")
    if (problem := folder_problem(out)) is not None:
        raise InputError(f"cannot write {name}: {problem}")
    if suffix == GIF_SUFFIX:
        if codec not in (None, "gif"):
            raise InputError(f"a .gif output is encoded as GIF; leave out --codec {codec}")
        return OutputSpec(path=out, kind="gif", codec="gif")
    container_format, default = VIDEO_FORMATS[suffix]
    codec = codec or default
    av, _ = require_video_extra()
    try:
        found = av.codec.Codec(codec, "w")
    except (av.FFmpegError, ValueError):  # UnknownCodecError
        raise InputError(f"unknown video codec '{codec}'; try libx264, libx265, libvpx-vp9 or mpeg4") from None
    if found.type != "video":
        raise InputError(f"codec '{codec}' encodes {found.type}, not video; try libx264")
    return OutputSpec(path=out, kind="video", format=container_format, codec=found.name,
                      crf=crf if crf is not None else DEFAULT_CRF.get(found.name))


def encode(spec: OutputSpec, frames: Iterable[tuple[np.ndarray, np.ndarray | None]], *, rate: Fraction,
           audio_from: Path | None) -> None:
    """Write ``frames`` (``(rgb, alpha)`` float arrays, all one size) as ``spec`` says, atomically,
    with the audio of ``audio_from`` (a clip file) when it has some and the container takes sound."""
    if spec.kind == "gif":
        write_atomically(spec.path, lambda handle: _write_gif(handle, frames, rate))
        return
    av, _ = require_video_extra()
    name = quote_path(spec.path)
    try:
        write_atomically(spec.path, lambda handle: _write_video(av, handle, spec, frames, rate, audio_from))
    except (av.FFmpegError, ValueError) as error:
        text = getattr(error, "strerror", None) or " ".join(str(error).split())
        raise InputError(f"cannot write {name} ({spec.format}, {spec.codec}): {text}") from None
    except OSError as error:
        raise InputError(f"cannot write {name}: {error.strerror or error}") from None


def _may_have_alpha(pixel_format) -> bool:
    """Whether frames of ``pixel_format`` can be transparent (an alpha plane, or a palette: GIF)."""
    return bool(pixel_format.has_palette or any(getattr(c, "is_alpha", False) for c in pixel_format.components))


def _u8(values: np.ndarray) -> np.ndarray:
    return (np.clip(values, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _write_video(av, handle, spec: OutputSpec, frames, rate: Fraction, audio_from: Path | None) -> None:
    with av.open(handle, "w", format=spec.format) as out:
        stream = None
        for rgb, _alpha in frames:
            pixels = _u8(rgb)
            if stream is None:
                stream = out.add_stream(spec.codec, rate=rate)
                height, width = pixels.shape[:2]
                stream.width, stream.height = width - width % 2, height - height % 2  # 4:2:0 wants even sides
                stream.pix_fmt = "yuv420p" if "yuv420p" in _pixel_formats(stream) else _pixel_formats(stream)[0]
                options = {"crf": str(spec.crf)} if spec.crf is not None else {}
                if spec.codec == "libvpx-vp9":
                    options["b"] = "0"  # constant quality
                stream.options = options
                audio = _add_audio(av, out, spec.format, audio_from)
            pixels = pixels[: stream.height, : stream.width]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        if stream is None:
            raise ValueError("no frames to write")
        for packet in stream.encode():
            out.mux(packet)
        if audio is not None:
            audio()


def _pixel_formats(stream) -> list[str]:
    formats = stream.codec_context.codec.video_formats or ()
    return [f.name for f in formats] or ["yuv420p"]


def _add_audio(av, out, container_format: str, source: Path | None):
    """Add the audio stream of ``source`` to ``out``; a function that then writes its packets."""
    if source is None:
        return None
    inp = av.open(str(source))
    if not inp.streams.audio:
        inp.close()
        return None
    audio_in = inp.streams.audio[0]
    copyable, fallback = AUDIO_COPY.get(container_format, (set(), "aac"))
    template = getattr(out, "add_stream_from_template", None)
    if template is not None and (copyable is None or audio_in.codec_context.name in copyable):
        audio_out = template(audio_in)

        def write() -> None:
            with inp:
                for packet in inp.demux(audio_in):
                    if packet.dts is None:
                        continue
                    packet.stream = audio_out
                    out.mux(packet)

        return write
    rate = audio_in.codec_context.sample_rate
    rates = av.codec.Codec(fallback, "w").audio_rates  # libopus: 8, 12, 16, 24 or 48 kHz only
    if rates and rate not in rates:
        rate = min(rates, key=lambda r: (r < rate, abs(r - rate)))
    audio_out = out.add_stream(fallback, rate=rate)

    def transcode() -> None:
        with inp:
            for frame in inp.decode(audio_in):
                frame.pts = None
                for packet in audio_out.encode(frame):
                    out.mux(packet)
            for packet in audio_out.encode(None):
                out.mux(packet)

    return transcode


def _write_gif(handle, frames, rate: Fraction) -> None:
    from PIL import Image

    images = []
    for rgb, alpha in frames:
        pixels = _u8(rgb) if alpha is None else np.dstack([_u8(rgb), _u8(alpha)])
        images.append(Image.fromarray(pixels, "RGB" if alpha is None else "RGBA"))
    if not images:
        raise InputError("no frames to write")
    duration = max(10, round(1000 / float(rate)))
    images[0].save(handle, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0,
                   disposal=2)
