"""nst-core video: a synthetic clip (a photo panned and zoomed, with a sine tone in AAC) made here,
painted through the real command (subprocess) and the Python API."""

import json
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image
from skimage import data

from nst_core import Config, hookimpl
from nst_core.errors import ConfigError

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from nst_core.video import container, flow  # noqa: E402
from nst_core.video.loop import VideoOptions, stylize_frames, stylize_video  # noqa: E402
from nst_core.video.synthetic import pan_zoom, write_clip  # noqa: E402

from .test_cli import interrupt_cli, one_line_error, run_cli  # noqa: E402

FRAMES, RATE, HW = 12, 12, (72, 96)


def photo():
    return data.astronaut().astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    path = folder / "clip.mp4"
    write_clip(path, pan_zoom(photo(), FRAMES, HW), rate=RATE)
    painting = folder / "painting.png"
    Image.fromarray(data.coffee()[::4, ::4]).save(painting)
    return path, painting


def audio_seconds(path):
    with av.open(str(path)) as box:
        stream = box.streams.audio[0]
        return float(stream.duration * stream.time_base), stream.codec_context.name


def test_cli_keeps_frame_count_rate_and_sound(clip, tmp_path):
    path, painting = clip
    output = tmp_path / "painted.mp4"
    proc = run_cli("video", path, painting, "--method", "instant", "-o", output, "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    frames = [e for e in events if e["event"] == "progress" and e["stage"] == "video"]
    assert [e["frame"] for e in frames] == list(range(1, FRAMES + 1)) and all(e["eta"] is not None for e in frames)
    assert events[-1]["event"] == "done" and events[-1]["frames"] == FRAMES and events[-1]["audio"] == "aac"
    info = container.probe(output)
    assert (info.frames, info.rate, info.hw) == (FRAMES, Fraction(RATE), HW)
    seconds, codec = audio_seconds(output)
    assert codec == "aac" and seconds == pytest.approx(audio_seconds(path)[0], abs=0.05)
    assert not (tmp_path / "painted.mp4.nst-core-frames").exists()  # the work folder is gone once written


def test_ctrl_c_keeps_finished_frames_and_resume_continues(clip, tmp_path):
    path, painting = clip
    output = tmp_path / "painted.webm"
    proc = interrupt_cli("video", path, painting, "--method", "instant", "-o", output, "--progress", "json",
                         when=lambda event: event["event"] == "progress" and event.get("frame") == 3)
    assert proc.returncode == 130, proc.stderr
    assert "--resume" in proc.stderr and not output.exists()
    kept = sorted((tmp_path / "painted.webm.nst-core-frames").glob("*.png"))
    assert 3 <= len(kept) < FRAMES
    proc = run_cli("video", path, painting, "--method", "instant", "-o", output, "--progress", "json", "--resume")
    assert proc.returncode == 0, proc.stderr
    done = json.loads(proc.stdout.splitlines()[-1])
    assert done["painted"] == FRAMES - len(kept) and done["frames"] == FRAMES
    info = container.probe(output)
    assert info.frames == FRAMES and info.audio == "opus"  # AAC does not go into WebM: re-encoded


@pytest.mark.parametrize("damage", ["cut_end", "cut_middle", "text"])
def test_corrupt_or_truncated_video_is_one_line_exit_2(clip, tmp_path, damage):
    path, painting = clip
    bad = tmp_path / "bad.mp4"
    if damage == "text":
        bad.write_text("not a video\n")
    elif damage == "cut_end":  # the index (moov) is written last: lost
        bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # index first, frames cut
        faststart = tmp_path / "faststart.mp4"
        with av.open(str(path)) as source, av.open(str(faststart), "w", options={"movflags": "faststart"}) as out:
            stream = out.add_stream_from_template(source.streams.video[0])
            for packet in source.demux(source.streams.video[0]):
                if packet.dts is not None:
                    packet.stream = stream
                    out.mux(packet)
        bad.write_bytes(faststart.read_bytes()[: faststart.stat().st_size * 2 // 3])
    line = one_line_error(run_cli("video", bad, painting, "--method", "instant", "-o", tmp_path / "o.mp4"), 2)
    assert "bad.mp4" in line and ("truncated" in line or "corrupt" in line)
    assert not (tmp_path / "o.mp4").exists()


def test_unknown_codec_is_one_line_exit_2(clip, tmp_path):
    path, painting = clip
    line = one_line_error(run_cli("video", path, painting, "--method", "instant", "-o", tmp_path / "o.mp4",
                                  "--codec", "no-such-codec"), 2)
    assert "unknown video codec 'no-such-codec'" in line


def test_missing_extra_is_named_in_one_line(clip, tmp_path):
    path, painting = clip
    fake = tmp_path / "no_av"
    (fake / "av").mkdir(parents=True)
    (fake / "av" / "__init__.py").write_text("raise ImportError('no PyAV here', name='av')\n")
    proc = run_cli("video", path, painting, "-o", tmp_path / "o.mp4", env={"PYTHONPATH": str(fake)})
    assert "pip install 'nst-core[video]'" in one_line_error(proc, 2)


def test_gif_transparency_is_kept(tmp_path):
    frames = pan_zoom(photo(), 6, (48, 64))
    images = []
    for image in frames:
        rgba = np.dstack([(image * 255).astype(np.uint8), np.full((48, 64), 255, np.uint8)])
        rgba[:12, :16, 3] = 0  # a transparent corner
        images.append(Image.fromarray(rgba, "RGBA"))
    gif = tmp_path / "in.gif"
    images[0].save(gif, save_all=True, append_images=images[1:], duration=100, loop=0, disposal=2)
    painting = tmp_path / "painting.png"
    Image.fromarray(data.coffee()[::8, ::8]).save(painting)
    result = stylize_video(gif, [painting], tmp_path / "out.gif", config=Config(method="instant", size=None))
    assert result.frames == 6 and result.audio is None
    with Image.open(tmp_path / "out.gif") as out:
        assert out.n_frames == 6
        out.seek(3)
        alpha = np.asarray(out.convert("RGBA"))[..., 3]
    assert alpha[:10, :14].max() == 0 and alpha[20:, 30:].min() == 255


def mean_temporal_error(frames, outputs):
    return np.mean([flow.temporal_error(outputs[i - 1], outputs[i], flow.motion(frames[i - 1], frames[i]))
                    for i in range(1, len(frames))])


def test_temporal_consistency_lowers_flicker_of_a_one_pass_method():
    frames = pan_zoom(photo(), 12, (72, 96))
    painting = data.coffee().astype(np.float32)[::4, ::4] / 255.0
    config = Config(method="instant", size=None)
    free = [r.image for r in stylize_frames(frames, [painting], config=config, temporal_weight=0)]
    held = [r.image for r in stylize_frames(frames, [painting], config=config)]
    assert mean_temporal_error(frames, held) < 0.8 * mean_temporal_error(frames, free)


class _Steps:
    def __init__(self):
        self.losses = []

    @hookimpl
    def nst_result(self, result):
        self.losses.append(set(result.losses))


def test_optimization_starts_from_the_warped_frame_with_a_temporal_loss(random_weights):
    frames = pan_zoom(photo(), 3, (48, 64), pan=0.04, zoom=1.03)  # a slow pan: three frames only
    painting = data.coffee().astype(np.float32)[::8, ::8] / 255.0
    config = Config(size=64, iterations=3, model="vgg16", precision="fp32", memory_format="contiguous")
    free = [r.image for r in stylize_frames(frames, [painting], config=config, temporal_weight=0)]
    heard = _Steps()
    # a random network's 3 steps move far from any start: a strong weight shows the term at work
    held = [r.image for r in stylize_frames(frames, [painting], config=config, plugins=[heard], temporal_weight=8)]
    assert "video_temporal" not in heard.losses[0] and all("video_temporal" in s for s in heard.losses[1:])
    assert mean_temporal_error(frames, held) < 0.8 * mean_temporal_error(frames, free)


def test_options_are_checked():
    with pytest.raises(ConfigError, match="temporal_weight"):
        VideoOptions(temporal_weight=-1)
    with pytest.raises(TypeError):
        VideoOptions(2.0)  # keyword-only
