"""Video decoding and frame-sampling fixtures (test/fixtures/videos/).

Writes small deterministic test videos with PyAV (and one animated GIF with Pillow), then decodes each one
the way the Hugging Face Video-LLaVA docs do (`read_video_pyav`: `container.decode(video=0)`, keep the frames
whose index is in `indices`, `frame.to_ndarray(format="rgb24")`), with
`indices = np.arange(0, total, total / 8).astype(int)` where `total` is the number of frames actually decoded
(not the container's header count, which may lie: see `lying_header.avi`).

Also records `np.arange(0, total, total / n).astype(int)` for a grid of (total, n), including the pairs where
float rounding makes numpy return n + 1 values (the last one equal to `total`).

Only codecs that both PyAV's bundled FFmpeg and the @ffmpeg-installer binary can decode are used.
Run with the pinned reference venv: `npm run reference`.
"""

from __future__ import annotations

import io
import json
import struct
import wave
from pathlib import Path

import av
import numpy as np
from PIL import Image
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "test" / "fixtures" / "videos"
WIDTH, HEIGHT = 64, 32
NUM_FRAMES = 8


def make_frame(t: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """RGB frame t: a flat background whose colour depends on t, a square that moves with t, and a
    gradient band in the lower half that sweeps many values (exercises the YUV->RGB rounding)."""
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:, :] = ((t * 37) % 256, (255 - t * 11) % 256, (t * 73 + 40) % 256)
    x0 = (t * 3) % (width - 12)
    y0 = (t * 2) % (height // 2 - 8)
    img[y0 : y0 + 8, x0 : x0 + 12] = (255 - (t * 5) % 256, (t * 29) % 256, 20)
    ys, xs = np.mgrid[height // 2 : height, 0:width]
    img[height // 2 :, :, 0] = (xs * 4 + t * 8) % 256
    img[height // 2 :, :, 1] = (ys * 8 + t * 3) % 256
    img[height // 2 :, :, 2] = ((xs + ys) * 3 + t * 11) % 256
    return img


def write_pyav(path: Path, fmt: str | None, codec: str, pix_fmt: str, n: int, options: dict[str, str],
               src_format: str = "rgb24", colorspace: int | None = None, color_range: int | None = None) -> None:
    # bitexact: no random UIDs or library-version strings, so every run writes the same bytes.
    with av.open(str(path), "w", format=fmt, container_options={"fflags": "+bitexact"}) as c:
        s = c.add_stream(codec, rate=10, options=options)
        s.width, s.height, s.pix_fmt = WIDTH, HEIGHT, pix_fmt
        s.thread_count = 1
        s.codec_context.flags |= av.codec.context.Flags.bitexact
        if colorspace is not None:  # tags the stream, so both decoders pick this YUV->RGB matrix
            s.codec_context.colorspace = colorspace
        if color_range is not None:
            s.codec_context.color_range = color_range
        for t in range(n):
            frame = av.VideoFrame.from_ndarray(make_frame(t), format="rgb24")
            if src_format != "rgb24":
                frame = frame.reformat(format=src_format, dst_colorspace=colorspace, dst_color_range=color_range)
            frame.pts = t
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


def write_gif(path: Path, n: int) -> None:
    # Fixed palette size and per-frame duration, no transparency: frames decode to exact RGB.
    images = [Image.fromarray(make_frame(t)).quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
              for t in range(n)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0, optimize=False,
                   disposal=1)


def patch_avi_frame_count(path: Path, fake: int) -> None:
    """Overwrite the AVI main header's dwTotalFrames and the video stream header's dwLength."""
    data = bytearray(path.read_bytes())
    avih = data.index(b"avih")
    # avih chunk: 'avih' size(4) then MainAVIHeader; dwTotalFrames is its 5th DWORD.
    struct.pack_into("<I", data, avih + 8 + 16, fake)
    strh = data.index(b"strh")
    # strh: fccType fccHandler dwFlags wPriority wLanguage dwInitialFrames dwScale dwRate dwStart dwLength
    assert data[strh + 8 : strh + 12] == b"vids"
    struct.pack_into("<I", data, strh + 8 + 32, fake)
    path.write_bytes(bytes(data))


def write_wav(path: Path) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(800, dtype="<i2").tobytes())


def decoded_frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def read_video_pyav(container, indices) -> np.ndarray:
    # As in the Hugging Face Video-LLaVA docs.
    frames = []
    container.seek(0)
    start_index = indices[0]
    end_index = indices[-1]
    for i, frame in enumerate(container.decode(video=0)):
        if i > end_index:
            break
        if i >= start_index and i in indices:
            frames.append(frame)
    return np.stack([x.to_ndarray(format="rgb24") for x in frames])


# One thread, no thread pools: x265 output then depends on the input only.
X265_DETERMINISTIC = "log-level=error:pools=none:frame-threads=1:wpp=0"

VIDEOS: list[tuple[str, str, dict]] = [
    # name, description, writer arguments
    ("ffv1.mkv", "FFV1 (lossless, bgr0) in Matroska", dict(fmt=None, codec="ffv1", pix_fmt="bgr0", n=24, options={})),
    ("x264rgb.mp4", "H.264 RGB lossless (libx264rgb qp 0) in MP4",
     dict(fmt=None, codec="libx264rgb", pix_fmt="rgb24", n=17, options={"qp": "0", "preset": "ultrafast"})),
    ("h264_yuv420p.mp4", "H.264 yuv420p, lossy, limited range, in MP4",
     dict(fmt=None, codec="libx264", pix_fmt="yuv420p", n=30, options={"crf": "18", "preset": "medium", "bf": "2"})),
    ("h264_bt709_full.mp4", "H.264 yuv420p tagged BT.709 matrix and full range, lossy, in MP4",
     dict(fmt=None, codec="libx264", pix_fmt="yuv420p", n=12, options={"crf": "18"}, src_format="yuv420p",
          colorspace=1, color_range=2)),
    ("vp9_gbrp.webm", "VP9 lossless, planar RGB (profile 1), in WebM",
     dict(fmt=None, codec="libvpx-vp9", pix_fmt="gbrp", n=13, options={"lossless": "1", "cpu-used": "8"})),
    ("vp9_yuv444p.webm", "VP9 lossless in YUV 4:4:4 (RGB->YUV is lossy), in WebM",
     dict(fmt=None, codec="libvpx-vp9", pix_fmt="yuv444p", n=11, options={"lossless": "1", "cpu-used": "8"},
          src_format="yuv444p")),
    ("mjpeg.avi", "Motion JPEG yuvj420p (full range), lossy, in AVI",
     dict(fmt=None, codec="mjpeg", pix_fmt="yuvj420p", n=19, options={"q:v": "3"}, src_format="yuvj420p")),
    ("huffyuv.avi", "HuffYUV rgb24 (lossless) in AVI, 5 frames (< 8: indices repeat)",
     dict(fmt=None, codec="huffyuv", pix_fmt="rgb24", n=5, options={})),
    ("lying_header.avi", "FFV1 bgr0 in AVI whose headers claim 100 frames (really 21)",
     dict(fmt=None, codec="ffv1", pix_fmt="bgr0", n=21, options={})),
    # High bit depth: PyAV converts these through swscale's general path (chroma siting, 15-bit intermediates),
    # which src/processing/yuv.ts reproduces; 8-bit HEVC takes the same special-case path as 8-bit H.264.
    ("h264_10bit.mp4", "H.264 High 10 (yuv420p10le), lossy, in MP4",
     dict(fmt=None, codec="libx264", pix_fmt="yuv420p10le", n=12, options={"crf": "18"})),
    ("hevc.mp4", "HEVC Main (yuv420p), lossy, in MP4",
     dict(fmt=None, codec="libx265", pix_fmt="yuv420p", n=12, options={"crf": "18", "x265-params": X265_DETERMINISTIC})),
    ("hevc_10bit.mp4", "HEVC Main 10 (yuv420p10le), lossy, in MP4",
     dict(fmt=None, codec="libx265", pix_fmt="yuv420p10le", n=14, options={"crf": "18", "x265-params": X265_DETERMINISTIC})),
    ("hevc_10bit_bt709_full.mp4", "HEVC Main 10 tagged BT.709 matrix and full range, lossy, in MP4",
     dict(fmt=None, codec="libx265", pix_fmt="yuv420p10le", n=9, options={"crf": "18", "x265-params": X265_DETERMINISTIC},
          src_format="yuv420p10le", colorspace=1, color_range=2)),
]


def sample_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    totals = list(range(1, 65)) + [99, 100, 101, 127, 128, 250, 299, 300, 997, 1000, 1001, 4097, 12345, 99991]
    counts = list(range(1, 17)) + [24, 32, 64]
    pairs, values = [], []
    for total in totals:
        for n in counts:
            v = np.arange(0, total, total / n).astype(int)
            pairs.append((total, n, len(v)))
            values.extend(v.tolist())
    # Pairs where float rounding gives n + 1 entries; the last one is total - 1 or even total itself.
    for total, n in [(17, 7), (11, 15), (15, 13), (49, 11), (3, 47), (1, 49), (19998, 7), (20000, 59)]:
        v = np.arange(0, total, total / n).astype(int)
        assert len(v) == n + 1, (total, n, v)
        pairs.append((total, n, len(v)))
        values.extend(v.tolist())
    p = np.array(pairs, dtype=np.int32)
    return p, np.array(values, dtype=np.int32), p[:, 2]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    info: dict[str, dict] = {}

    for name, description, kw in VIDEOS:
        write_pyav(OUT / name, **kw)
    patch_avi_frame_count(OUT / "lying_header.avi", 100)
    write_gif(OUT / "anim.gif", 9)

    for name in [v[0] for v in VIDEOS] + ["anim.gif"]:
        path = OUT / name
        total = decoded_frame_count(path)
        indices = np.arange(0, total, total / NUM_FRAMES).astype(int)
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            header_frames = stream.frames
            clip = read_video_pyav(c, indices)
        with av.open(str(path)) as c:
            first = next(c.decode(video=0))
            pix_fmt, color_range, colorspace = first.format.name, int(first.color_range), int(first.colorspace)
        # Indices of the frames read_video_pyav actually returns (each distinct index once, in order).
        kept = np.array([i for i in range(total) if i in indices], dtype=np.int32)
        assert clip.shape == (len(kept), HEIGHT, WIDTH, 3), (name, clip.shape)
        tensors[f"{name}/frames"] = clip
        tensors[f"{name}/sampled_indices"] = indices.astype(np.int32)
        tensors[f"{name}/frame_indices"] = kept
        tensors[f"{name}/total"] = np.array([total], dtype=np.int32)
        info[name] = {"total": total, "header_frames": header_frames, "pix_fmt": pix_fmt,
                      "color_range": color_range, "colorspace": colorspace}

    assert info["lying_header.avi"]["header_frames"] == 100 and info["lying_header.avi"]["total"] == 21

    # Error cases.
    (OUT / "not_a_video.txt").write_bytes(b"this is plain text, not a video container\n" * 4)
    write_wav(OUT / "audio_only.wav")
    full = (OUT / "h264_yuv420p.mp4").read_bytes()
    (OUT / "truncated.mp4").write_bytes(full[: len(full) // 3])
    # A valid YUV4MPEG2 stream header (64x32, 10 fps) followed by no frame at all.
    (OUT / "zero_frames.y4m").write_bytes(b"YUV4MPEG2 W64 H32 F10:1 Ip A1:1 C420jpeg\n")
    assert decoded_frame_count(OUT / "zero_frames.y4m") == 0

    pairs, values, _ = sample_grid()
    tensors["sample_grid/pairs"] = pairs  # [G, 3] = (total, numFrames, length)
    tensors["sample_grid/values"] = values  # concatenated arange values, `length` per pair

    save_file(tensors, str(OUT / "expected.safetensors"),
              # One metadata key: safetensors writes several keys in an unstable order.
              metadata={"info": json.dumps({"videos": info, "av": av.__version__, "numpy": np.__version__},
                                           sort_keys=True)})
    for name, meta in info.items():
        print(f"{name:20s} {meta}")


if __name__ == "__main__":
    main()
