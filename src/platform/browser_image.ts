/**
 * Images in the page: the browser decodes (createImageBitmap, no colour-space conversion, no premultiplication,
 * EXIF orientation applied as transformers' load_image does), then the RGB goes through this package's own
 * Pillow-exact resize and normalisation (src/processing/image.ts), so the same decoded RGB gives the same pixel values
 * as in Node. What can differ is the decoding itself: lossless images (PNG, lossless WebP, GIF) decode to the same
 * RGB; JPEG decoders may round differently from libjpeg-turbo in Pillow; an alpha channel is dropped as load_image
 * does, after the canvas's premultiplied storage (semi-transparent pixels can differ); 16-bit PNGs are reduced to
 * 8 bits by the browser (Pillow keeps the high byte).
 */
import { MediaError } from '../errors';
import { DecodeOptions, EncodedImage, MAX_INPUT_PIXELS, RawImage, describeImage } from '../processing/image';

/** A media file by URL (relative to the page), with a MediaError naming `source` when it cannot be had. */
export async function fetchMedia(url: string, source: string): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(new URL(url, location.href));
  } catch (err) {
    throw new MediaError(source, `cannot be fetched (${(err as Error).message})`);
  }
  if (!res.ok) throw new MediaError(source, res.status === 404 ? 'file not found (HTTP 404)' : `HTTP ${res.status}`);
  return res;
}

async function toBlob(input: EncodedImage, source: string): Promise<Blob> {
  if (input instanceof Blob) return input;
  if (input instanceof Uint8Array) return new Blob([input as Uint8Array<ArrayBuffer>]);
  return (await fetchMedia(input, source)).blob();
}

export async function decodeImageInPage(input: EncodedImage, options: DecodeOptions): Promise<RawImage> {
  const source = describeImage(input);
  const blob = await toBlob(input, source);
  if (blob.size === 0) throw new MediaError(source, 'empty file or buffer: not an image');
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(blob, {
      colorSpaceConversion: 'none',
      premultiplyAlpha: 'none',
      imageOrientation: options.convention === 'pil_image' ? 'none' : 'from-image',
    });
  } catch (err) {
    throw new MediaError(source, `not a decodable image (${(err as Error).message})`);
  }
  try {
    const { width, height } = bitmap;
    if (width === 0 || height === 0) throw new MediaError(source, `zero-size image (${width}x${height})`);
    if (width * height > MAX_INPUT_PIXELS) {
      throw new MediaError(source, `${width}x${height} exceeds ${MAX_INPUT_PIXELS} pixels (Pillow's decompression-bomb limit)`);
    }
    const canvas = new OffscreenCanvas(width, height);
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    if (!ctx) throw new MediaError(source, 'the browser gave no 2D canvas to read the pixels');
    ctx.drawImage(bitmap, 0, 0);
    const rgba = ctx.getImageData(0, 0, width, height).data;
    const data = new Uint8Array(width * height * 3);
    for (let i = 0, o = 0; o < data.length; i += 4, o += 3) {
      data[o] = rgba[i];
      data[o + 1] = rgba[i + 1];
      data[o + 2] = rgba[i + 2];
    }
    return { data, width, height, channels: 3 };
  } finally {
    bitmap.close();
  }
}
