/**
 * The colour signal of an H.264 stream as ffmpeg reads it: matrix_coefficients and video_full_range_flag from the
 * sequence parameter set's VUI (H.264 §7.3.2.1.1, §E.1.1). ffmpeg converts with that matrix, and with BT.601 when the
 * stream leaves it unspecified; browsers assume BT.709 for such streams, so the page reads the SPS itself to convert
 * its decoded frames the way Node's ffmpeg does (src/platform/browser_video.ts).
 */
import type { YuvMatrix } from './yuv';

export interface ColourSignal {
  /** The matrix ffmpeg converts with (unspecified → bt601). */
  matrix: YuvMatrix;
  fullRange: boolean;
  /** matrix_coefficients as coded (2 = unspecified, also when the SPS has no colour description). */
  matrixCoefficients: number;
}

/** Bit reader over an RBSP (emulation-prevention bytes removed). */
class Bits {
  private pos = 0;

  constructor(private readonly bytes: Uint8Array) {}

  u(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) {
      const byte = this.bytes[this.pos >> 3];
      if (byte === undefined) throw new RangeError('SPS ends early');
      v = v * 2 + ((byte >> (7 - (this.pos & 7))) & 1);
      this.pos++;
    }
    return v;
  }

  ue(): number {
    let zeros = 0;
    while (this.u(1) === 0) if (++zeros > 31) throw new RangeError('bad Exp-Golomb code');
    return 2 ** zeros - 1 + this.u(zeros);
  }

  se(): number {
    const k = this.ue();
    return k % 2 === 1 ? (k + 1) / 2 : -k / 2;
  }
}

/** The RBSP of a NAL unit: every 0x03 that follows two zero bytes is emulation prevention, not data. */
function rbsp(nal: Uint8Array): Uint8Array {
  const out: number[] = [];
  let zeros = 0;
  for (const b of nal) {
    if (zeros >= 2 && b === 3) {
      zeros = 0;
      continue;
    }
    out.push(b);
    zeros = b === 0 ? zeros + 1 : 0;
  }
  return Uint8Array.from(out);
}

function skipScalingList(bits: Bits, size: number): void {
  let last = 8;
  let next = 8;
  for (let j = 0; j < size; j++) {
    if (next !== 0) next = (last + bits.se() + 256) % 256;
    last = next === 0 ? last : next;
  }
}

const HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]);

/** The colour signal of one SPS NAL unit (with its 1-byte header); null when it cannot be parsed. */
export function spsColourSignal(nal: Uint8Array): ColourSignal | null {
  try {
    const bits = new Bits(rbsp(nal.subarray(1)));
    const profile = bits.u(8);
    bits.u(16); // constraint flags, level
    bits.ue(); // seq_parameter_set_id
    if (HIGH_PROFILES.has(profile)) {
      const chroma = bits.ue();
      if (chroma === 3) bits.u(1);
      bits.ue(); // bit_depth_luma_minus8
      bits.ue(); // bit_depth_chroma_minus8
      bits.u(1); // qpprime_y_zero_transform_bypass_flag
      if (bits.u(1)) for (let i = 0; i < (chroma === 3 ? 12 : 8); i++) if (bits.u(1)) skipScalingList(bits, i < 6 ? 16 : 64);
    }
    bits.ue(); // log2_max_frame_num_minus4
    const pocType = bits.ue();
    if (pocType === 0) bits.ue();
    else if (pocType === 1) {
      bits.u(1);
      bits.se();
      bits.se();
      for (let i = bits.ue(); i > 0; i--) bits.se();
    }
    bits.ue(); // max_num_ref_frames
    bits.u(1); // gaps_in_frame_num_value_allowed_flag
    bits.ue(); // pic_width_in_mbs_minus1
    bits.ue(); // pic_height_in_map_units_minus1
    if (!bits.u(1)) bits.u(1); // frame_mbs_only_flag, mb_adaptive_frame_field_flag
    bits.u(1); // direct_8x8_inference_flag
    if (bits.u(1)) for (let i = 0; i < 4; i++) bits.ue(); // frame cropping
    let matrixCoefficients = 2;
    let fullRange = false;
    if (bits.u(1)) {
      // VUI
      if (bits.u(1) && bits.u(8) === 255) bits.u(32); // aspect ratio (Extended_SAR)
      if (bits.u(1)) bits.u(1); // overscan
      if (bits.u(1)) {
        bits.u(3); // video_format
        fullRange = bits.u(1) === 1;
        if (bits.u(1)) {
          bits.u(16); // colour_primaries, transfer_characteristics
          matrixCoefficients = bits.u(8);
        }
      }
    }
    const matrix: YuvMatrix = matrixCoefficients === 1 ? 'bt709' : matrixCoefficients === 9 || matrixCoefficients === 10 ? 'bt2020' : 'bt601';
    return { matrix, fullRange, matrixCoefficients };
  } catch {
    return null;
  }
}

/** The colour signal of the first SPS in an avcC record (an MP4's AVCDecoderConfigurationRecord); null if none parses. */
export function avcColourSignal(avcC: Uint8Array): ColourSignal | null {
  if (avcC.length < 8) return null;
  const count = avcC[5] & 0x1f;
  let pos = 6;
  for (let i = 0; i < count && pos + 2 <= avcC.length; i++) {
    const length = (avcC[pos] << 8) | avcC[pos + 1];
    const signal = spsColourSignal(avcC.subarray(pos + 2, pos + 2 + length));
    if (signal) return signal;
    pos += 2 + length;
  }
  return null;
}
