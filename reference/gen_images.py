"""Image preprocessing fixtures (test/fixtures/images/).

Writes small deterministic test images (smooth gradients, hard-edged rectangles, fine stripes and a small
noise patch, so the resampler's antialiasing and ringing are both exercised) in every format the TypeScript
decoder handles, then runs the slow (Pillow) `VideoLlavaImageProcessor` of transformers on each one with the
OpenAI-CLIP config of the spec (section 4.3) and records:

  expected.safetensors
    <file>.<convention>.decoded        U8  [h, w, 3]  the RGB array the processor resizes (small files only)
    <file>.<variant>.resized_sub       U8  [.., .., 3] resized[r0::sr, c0::sc] (strides in manifest.json)
    <file>.<variant>.pixel_values_sub  F32 [3, .., ..] pixel_values[:, 3::14, 3::14]
    <file>.<variant>.pixel_values      F32 [3, H, W]   full, for two files only (size budget)
  manifest.json: per case the file, decode convention, config variant, the resized shape and the SHA-256 of
    the full resized uint8 array and of the full float32 pixel_values (little-endian, C order), so that a test
    can check whole arrays bit for bit without committing them.
  resample.safetensors: Pillow `Image.resize(size, BICUBIC)` of small noisy sources to many target sizes
    (<case>.src U8 [h, w, c], <case>.out U8 [H, W, c]), for the resampler's own tests.

Decode conventions (see src/processing/image.ts):
  load_image  the processor is given the file path: transformers' `load_image` opens it, applies
              `ImageOps.exif_transpose` and `convert("RGB")`; `convert_to_rgb` then composites on white only
              what is still marked transparent (a single transparent colour).
  pil_image   the processor is given `PIL.Image.open(path)` (the model card's example): no EXIF transpose;
              `convert_to_rgb` composites any alpha / transparency on white.

Run with the pinned reference venv: `npm run reference`.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.numpy import save_file
from transformers.models.video_llava.image_processing_video_llava import VideoLlavaImageProcessor

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "test" / "fixtures" / "images"

# preprocessor_config.json of the checkpoint (spec section 4.3).
CLIP_CONFIG = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "VideoLlavaImageProcessor",
    "processor_class": "VideoLlavaProcessor",
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 224},
}

# Other settings that reach code paths the CLIP config never does.
VARIANTS = {
    "clip": {},
    # crop taller than the resized image (zero padding, odd sizes) and narrower (cropping): both rules at once
    "pad": {"size": {"shortest_edge": 201}, "crop_size": {"height": 230, "width": 191}},
    # no center crop: pixel_values keep the resized shape
    "nocrop": {"do_center_crop": False},
    # no resize: the decoded image is cropped (and padded) directly
    "noresize": {"do_resize": False, "crop_size": {"height": 64, "width": 80}},
}

FULL_PIXEL_VALUES = {"grad_640x480.png"}


# --------------------------------------------------------------------------------------------- images


def synth(width: int, height: int, seed: int) -> np.ndarray:
    """Deterministic RGB test picture: gradients, hard edges, fine stripes, a small noise patch."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(2 * math.pi * xs / max(width, 8) * 1.5 + seed)
    g = 255.0 * ys / max(height - 1, 1)
    b = 127.5 + 127.5 * np.cos(2 * math.pi * (xs + 2 * ys) / (0.4 * (width + height) + 1))
    img = np.rint(np.stack([r, g, b], axis=-1)).clip(0, 255).astype(np.uint8)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1 = min(width, x0 + 1 + int(rng.integers(0, max(2, width // 3))))
        y1 = min(height, y0 + 1 + int(rng.integers(0, max(2, height // 3))))
        img[y0:y1, x0:x1] = rng.integers(0, 256, 3)
    # one-pixel stripes: the hardest case for an antialiasing filter
    sx0, sy0 = width // 5, (3 * height) // 5
    stripes = ((np.arange(width - sx0)[None, :] // 1) % 2 * 255).astype(np.uint8)
    img[sy0 : sy0 + max(1, height // 10), sx0:, 0] = stripes
    nh, nw = min(height, 24), min(width, 24)
    ny, nx = height // 3, width // 2
    img[ny : ny + nh, nx : nx + nw] = rng.integers(0, 256, (min(nh, height - ny), min(nw, width - nx), 3))
    return img


def write_png_raw(path: Path, array: np.ndarray, color_type: int, bit_depth: int, trns: bytes | None = None) -> None:
    """A minimal PNG encoder (no filtering) for what Pillow cannot write: 16-bit RGB / RGBA, 16-bit tRNS."""
    height, width = array.shape[:2]
    if bit_depth == 16:
        rows = array.astype(">u2").reshape(height, -1).view(np.uint8)
    else:
        rows = array.astype(np.uint8).reshape(height, -1)
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    extra = chunk(b"tRNS", trns) if trns is not None else b""
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw, 9))
           + chunk(b"IEND", b""))
    path.write_bytes(png)


def exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def write_images() -> list[str]:
    """Writes every source image; returns the file names in a fixed order."""
    names: list[str] = []

    def save(name: str, im: Image.Image, **kw) -> None:
        im.save(OUT / name, **kw)
        names.append(name)

    # plain RGB PNGs: the sizes and aspect ratios of the brief (width x height)
    for i, (w, h) in enumerate([(640, 480), (480, 640), (224, 224), (300, 200), (100, 60), (1, 300), (225, 1000)]):
        save(f"grad_{w}x{h}.png", Image.fromarray(synth(w, h, 10 + i)), optimize=False, compress_level=9)

    base = synth(64, 48, 3)
    ys, xs = np.mgrid[0:48, 0:64]

    save("gray_64x48.png", Image.fromarray(base[..., 1]), compress_level=9)
    save("bilevel_64x48.png", Image.fromarray(base[..., 0] > 127).convert("1"), compress_level=9)

    # alpha: every value 0..255 appears, and pixel colours vary independently of alpha
    alpha = ((xs * 8 + ys * 4) % 256).astype(np.uint8)
    alpha[:, :6] = 0
    alpha[:, -6:] = 255
    save("rgba_64x48.png", Image.fromarray(np.dstack([base, alpha]), "RGBA"), compress_level=9)
    save("la_64x48.png", Image.fromarray(np.dstack([base[..., 2], alpha]), "LA"), compress_level=9)

    # palette images: 16 colours, index 5 has the same colour as index 3 (so a colour-keyed transparency
    # on index 3 also whitens index 5 under the load_image convention, but not under pil_image)
    pal = np.random.default_rng(7).integers(0, 256, (16, 3)).astype(np.uint8)
    pal[5] = pal[3]
    idx = ((xs // 6 + ys // 8 * 3) % 16).astype(np.uint8)
    p = Image.fromarray(idx, "P")
    p.putpalette(pal.flatten().tolist())
    save("palette_64x48.png", p, compress_level=9)
    save("palette_trns_64x48.png", p, transparency=3, compress_level=9)
    levels = bytes([(i * 17) % 256 for i in range(16)])
    save("palette_alpha_64x48.png", p, transparency=levels, compress_level=9)

    # single transparent colour in grayscale / RGB PNGs (tRNS chunk)
    gray = base[..., 1].copy()
    gray[20:30, 30:50] = 77
    save("gray_trns_64x48.png", Image.fromarray(gray), transparency=77, compress_level=9)
    rgb = base.copy()
    rgb[30:40, 10:30] = (12, 34, 56)
    save("rgb_trns_64x48.png", Image.fromarray(rgb), transparency=(12, 34, 56), compress_level=9)

    # 16-bit PNGs: Pillow opens grayscale as "I;16" (RGB conversion clips at 255), colour as its high bytes
    g16 = ((xs * 700 + ys * 50) % 65536).astype(np.uint16)
    g16[:8, :8] = np.arange(64).reshape(8, 8) * 3  # some values below 256, which survive the clip
    save("gray16_64x48.png", Image.fromarray(g16), compress_level=9)
    c16 = (base.astype(np.uint16) * 257 + np.uint16(123)) ^ (xs[..., None] * 97).astype(np.uint16)
    write_png_raw(OUT / "rgb16_64x48.png", c16, color_type=2, bit_depth=16)
    names.append("rgb16_64x48.png")
    # 16-bit colour keys: Pillow compares the raw 16-bit tRNS values with the 8-bit pixels of an RGB image, and
    # with the 16-bit values of an "I;16" image (a key that load_image's convert("RGB") drops)
    g16k = g16.copy()
    g16k[20:30, 10:30] = 77
    write_png_raw(OUT / "gray16_trns_64x48.png", g16k, color_type=0, bit_depth=16, trns=struct.pack(">H", 77))
    names.append("gray16_trns_64x48.png")
    c16k = c16.copy()
    c16k[30:40, 10:30] = (12 * 256 + 5, 34 * 256 + 200, 56 * 256)
    write_png_raw(OUT / "rgb16_trns_64x48.png", c16k, color_type=2, bit_depth=16, trns=struct.pack(">HHH", 12, 34, 56))
    names.append("rgb16_trns_64x48.png")
    a16 = (alpha.astype(np.uint16) * 257) ^ (ys * 31).astype(np.uint16)
    write_png_raw(OUT / "rgba16_64x48.png", np.dstack([c16, a16]), color_type=6, bit_depth=16)
    names.append("rgba16_64x48.png")

    # JPEGs (libjpeg decoders: Pillow's bundled libjpeg-turbo vs sharp's mozjpeg are compared by the tests)
    save("photo_240x180.jpg", Image.fromarray(synth(240, 180, 21)), quality=88)
    save("gray_64x48.jpg", Image.fromarray(base[..., 0]), quality=90)
    save("cmyk_64x48.jpg", Image.fromarray(base).convert("CMYK"), quality=92)

    # EXIF orientation (tag 274): all eight values on a small PNG, plus a JPEG
    small = synth(24, 16, 5)
    for k in range(1, 9):
        save(f"orient{k}_24x16.png", Image.fromarray(small), exif=exif_with_orientation(k), compress_level=9)
    save("exif6_120x80.jpg", Image.fromarray(synth(120, 80, 6)), exif=exif_with_orientation(6), quality=90)

    # WebP (lossless RGB, lossless RGBA, lossy RGB) and an animated GIF with a transparent index
    save("lossless_120x90.webp", Image.fromarray(synth(120, 90, 8)), lossless=True, method=6)
    save("lossless_alpha_64x48.webp", Image.fromarray(np.dstack([base, alpha]), "RGBA"), lossless=True)
    save("lossy_120x90.webp", Image.fromarray(synth(120, 90, 9)), quality=80, method=4)
    f0 = Image.fromarray(idx, "P")
    f0.putpalette(pal.flatten().tolist())
    f1 = Image.fromarray((15 - idx).astype(np.uint8), "P")
    f1.putpalette(pal.flatten().tolist())
    f0.save(OUT / "anim_64x48.gif", save_all=True, append_images=[f1], transparency=3, duration=100, loop=0,
            optimize=False)
    names.append("anim_64x48.gif")
    return names


# --------------------------------------------------------------------------------------------- processor


class CapturingProcessor(VideoLlavaImageProcessor):
    """The slow processor, recording the array it resizes and the resized array."""

    def resize(self, image, size, resample=3, data_format=None, input_data_format=None, **kwargs):
        self.captured_decoded = np.array(image, copy=True)
        out = super().resize(image, size, resample, data_format, input_data_format, **kwargs)
        self.captured_resized = np.array(out, copy=True)
        return out

    def center_crop(self, image, size, data_format=None, input_data_format=None, **kwargs):
        if not self.do_resize:  # the decoded image goes straight to the crop
            self.captured_decoded = np.array(image, copy=True)
        return super().center_crop(image, size, data_format, input_data_format, **kwargs)


def run_processor(path: Path, convention: str, variant: str):
    kwargs = {k: v for k, v in CLIP_CONFIG.items() if k not in ("image_processor_type", "processor_class")}
    kwargs.update(VARIANTS[variant])
    proc = CapturingProcessor(**kwargs)
    proc.captured_decoded = None
    proc.captured_resized = None
    image = str(path) if convention == "load_image" else Image.open(path)
    out = proc(images=image, return_tensors="np", return_legacy_image_output=False)
    pixel_values = np.ascontiguousarray(out["pixel_values"][0], dtype=np.float32)
    return proc.captured_decoded, proc.captured_resized, pixel_values


def sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()).hexdigest()


def strides_for(shape: tuple[int, ...], target: int = 32) -> tuple[int, int]:
    return max(1, math.ceil(shape[0] / target)), max(1, math.ceil(shape[1] / target))


# --------------------------------------------------------------------------------------------- resample


RESAMPLE_CASES = [
    # (source name, width, height, channels, seed, [(out_w, out_h), ...])
    ("noise37x23", 37, 23, 3, 101, [(16, 9), (5, 3), (1, 1), (37, 50), (80, 23), (100, 61), (13, 40), (36, 22),
                                    (38, 24), (74, 46), (37, 23), (37, 1), (1, 23)]),
    ("noise64x48", 64, 48, 3, 102, [(21, 16), (7, 48), (64, 5), (200, 3), (63, 47), (11, 97)]),
    ("tiny3x2", 3, 2, 3, 103, [(50, 40), (1, 1), (4, 2), (3, 7)]),
    ("wide250x7", 250, 7, 3, 104, [(3, 2), (250, 1), (17, 7), (224, 6)]),
    ("gray31x17", 31, 17, 1, 105, [(12, 40), (64, 9)]),
    # Pillow 13 runs the vertical pass first when height shrinks by more than 2x the pixels width does:
    # (36, 20) and (35, 18) go vertical-first, (35, 19) sits on the boundary and goes horizontal-first
    ("order37x23", 37, 23, 3, 106, [(36, 20), (35, 19), (35, 18), (70, 20), (2, 1)]),
    ("tall9x80", 9, 80, 3, 107, [(5, 30), (30, 75), (8, 77), (8, 78), (3, 80)]),
]


def resample_fixtures() -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    for name, w, h, c, seed, sizes in RESAMPLE_CASES:
        rng = np.random.default_rng(seed)
        src = rng.integers(0, 256, (h, w, c)).astype(np.uint8)
        # a hard edge and a saturated block, so clipping at 0 and 255 happens
        src[: h // 2, : w // 3] = 255
        src[h // 2 :, w // 3 : w // 2] = 0
        tensors[f"{name}.src"] = src
        im = Image.fromarray(src[..., 0] if c == 1 else src, "L" if c == 1 else "RGB")
        for ow, oh in sizes:
            out = np.array(im.resize((ow, oh), Image.Resampling.BICUBIC))
            tensors[f"{name}.{ow}x{oh}"] = out.reshape(oh, ow, c)
    return tensors


# --------------------------------------------------------------------------------------------- main

CASES = [
    # (file, conventions, variants); every other file runs (both conventions, "clip")
    ("grad_300x200.png", ("load_image",), ("clip", "pad", "nocrop", "noresize")),
    ("grad_100x60.png", ("load_image",), ("clip", "nocrop", "noresize")),
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        if old.is_file():
            old.unlink()
    names = write_images()
    (OUT / "preprocessor_config.json").write_text(json.dumps(CLIP_CONFIG, indent=2, sort_keys=True) + "\n")

    overrides = {file: (conv, var) for file, conv, var in CASES}
    tensors: dict[str, np.ndarray] = {}
    cases = []
    for name in names:
        conventions, variants = overrides.get(name, (("load_image", "pil_image"), ("clip",)))
        decoded_by = {}
        for convention in conventions:
            for variant in variants:
                decoded, resized, pixel_values = run_processor(OUT / name, convention, variant)
                key = f"{name}.{convention}.{variant}"
                case = {
                    "file": name,
                    "convention": convention,
                    "variant": variant,
                    "decoded_shape": list(decoded.shape),
                    "pixel_values_shape": list(pixel_values.shape),
                    "pixel_values_sha256": sha256(pixel_values),
                }
                if resized is not None:
                    sr, sc = strides_for(resized.shape)
                    case.update(resized_shape=list(resized.shape), resized_sha256=sha256(resized),
                                resized_sub_stride=[sr, sc])
                    tensors[f"{key}.resized_sub"] = np.ascontiguousarray(resized[::sr, ::sc])
                tensors[f"{key}.pixel_values_sub"] = np.ascontiguousarray(pixel_values[:, 3::14, 3::14])
                if name in FULL_PIXEL_VALUES and variant == "clip" and convention == "load_image":
                    tensors[f"{key}.pixel_values"] = pixel_values
                    case["pixel_values_full"] = True
                cases.append(case)
                decoded_by[convention] = decoded
        # decoded arrays of the small files (the decode-level parity checks)
        for convention, decoded in decoded_by.items():
            if convention == "pil_image" and np.array_equal(decoded, decoded_by["load_image"]):
                continue  # conventions_agree in the manifest: the load_image array serves both
            if decoded.size <= 120 * 90 * 3 or name.endswith(".jpg"):
                tensors[f"{name}.{convention}.decoded"] = np.ascontiguousarray(decoded, dtype=np.uint8)
        if len(decoded_by) == 2:
            same = np.array_equal(decoded_by["load_image"], decoded_by["pil_image"])
            for case in cases:
                if case["file"] == name:
                    case["conventions_agree"] = bool(same)

    save_file(tensors, str(OUT / "expected.safetensors"), metadata={"generator": "reference/gen_images.py"})
    save_file(resample_fixtures(), str(OUT / "resample.safetensors"),
              metadata={"generator": "reference/gen_images.py"})
    manifest = {
        "config": "preprocessor_config.json",
        "variants": VARIANTS,
        "resample_cases": [{"name": n, "width": w, "height": h, "channels": c, "sizes": s}
                           for n, w, h, c, _, s in RESAMPLE_CASES],
        "cases": cases,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
