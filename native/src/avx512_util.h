/* AVX-512 helpers shared by the AVX-512 and AMX kernels; include after the file's target pragma. */
#ifndef VL_AVX512_UTIL_H
#define VL_AVX512_UTIL_H
#include <immintrin.h>
#include "vl.h"

/* In place: r[i][j] → r[j][i] for a 16 × 16 block of floats. */
static inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int g = 0; g < 4; g++) {
    r[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  /* r[4g + c] lane L now holds column 4L + c of rows 4g..4g+3: a 4 × 4 transpose of 128-bit lanes is left. */
  for (int c = 0; c < 4; c++) {
    __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88), u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);
    __m512 u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88), u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
    t[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
    t[8 + c] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
    t[4 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
  }
  for (int i = 0; i < 16; i++) r[i] = t[i];
}

/* Quantized formats: 16 values of storage row `row` from column `col` (Q4 needs col and ld multiples of 16 and
 * block a multiple of 16, checked by quant_vectors()). Same float32 operations as vl_bmat_get, lane by lane. */
static inline __m512 round_lanes(int dtype, __m512 v) {
  if (dtype == VL_BF16) {
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x400000));
    return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32((int)0xffff0000u)));
  }
  if (dtype == VL_F16) return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  return v;
}

static inline __m512 dequant16(const vl_bmat *b, int64_t row, int64_t col) {
  int64_t flat = row * b->ld + col;
  if (b->format == VL_I8) {
    __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)((const int8_t *)b->data + flat))));
    __m512 t = _mm512_mul_ps(q, _mm512_set1_ps(b->scales[row])); /* SCB: one scale per storage row */
    return _mm512_mul_ps(t, _mm512_set1_ps(VL_INV_127));
  }
  /* 8 bytes → 16 codes in order: byte i gives value 2i (high nibble) then 2i + 1 (low nibble) */
  __m128i bytes = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)((const uint8_t *)b->data + (flat >> 1))));
  __m128i codes = _mm_or_si128(_mm_srli_epi16(bytes, 4), _mm_slli_epi16(_mm_and_si128(bytes, _mm_set1_epi16(15)), 8));
  __m512 table = _mm512_loadu_ps(b->code);
  __m512 v = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(codes), table);
  /* block sizes are powers of two (bitsandbytes' are): a shift, not a 64-bit division per 16 values */
  int64_t scale = (b->block & (b->block - 1)) == 0 ? flat >> __builtin_ctzll((unsigned long long)b->block) : flat / b->block;
  return round_lanes(b->round, _mm512_mul_ps(v, _mm512_set1_ps(b->scales[scale])));
}

static inline int quant_vectors(const vl_bmat *b) {
  return b->format == VL_I8 || (b->format == VL_Q4 && b->ld % 16 == 0 && b->block % 16 == 0);
}

#endif
