/*
 * bfloat16 compute on AVX512-BF16 (VDPBF16PS: two bfloat16 products per lane, exact, accumulated in float32), for
 * CPUs that have it without AMX (AMD Zen 4/5 among them). Operands are packed as (k even, k odd) pairs of
 * bfloat16 in 32-bit lanes: B as pairs along k for 32 columns, A as pairs broadcast per row. Compared with the
 * float32 kernels on the same rounded inputs by the tests (only the summation order differs).
 */
#include "vl.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && (__GNUC__ >= 10)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c,avx2")
#include <immintrin.h>
#include "avx512_util.h"

#define MR 12
#define NR 32

static inline uint32_t pair(float lo, float hi) { return (uint32_t)vl_f32_to_bf16(lo) | ((uint32_t)vl_f32_to_bf16(hi) << 16); }

/* dst[p][NR] = (B(k0 + 2p, n), B(k0 + 2p + 1, n)) as bfloat16 pairs, columns past nr and k past kc zero. */
static void pack_b(const vl_bmat *b, int64_t k0, int64_t kc, int64_t n0, int64_t nr, float *dstf, int compute) {
  (void)compute;
  uint32_t *dst = (uint32_t *)dstf;
  int64_t p = 0;
  if (b->trans && b->format == VL_BF16 && nr == NR) {
    /* 32 stored bfloat16 along k = 16 pairs already in pair order: transpose 16 × 16 blocks of pairs. */
    const uint16_t *w = b->data;
    for (; 2 * p + 32 <= kc; p += 16) {
      for (int half = 0; half < 2; half++) {
        __m512 r[16];
        for (int i = 0; i < 16; i++) r[i] = _mm512_castsi512_ps(_mm512_loadu_si512(w + (n0 + half * 16 + i) * b->ld + k0 + 2 * p));
        transpose16(r);
        for (int q = 0; q < 16; q++) _mm512_store_ps((float *)(dst + (p + q) * NR + half * 16), r[q]);
      }
    }
  }
  for (; 2 * p < kc; p++) {
    for (int64_t j = 0; j < nr; j++) {
      float lo = vl_bmat_get(b, k0 + 2 * p, n0 + j);
      float hi = 2 * p + 1 < kc ? vl_bmat_get(b, k0 + 2 * p + 1, n0 + j) : 0.0f;
      dst[p * NR + j] = pair(lo, hi);
    }
    for (int64_t j = nr; j < NR; j++) dst[p * NR + j] = 0;
  }
}

static void micro(int64_t pairs, const float *apf, const float *bpf, float *c, int64_t ldc, int64_t mr, int64_t nr, float beta) {
  const uint32_t *ap = (const uint32_t *)apf, *bp = (const uint32_t *)bpf;
  __m512 acc[MR][2];
#pragma GCC unroll 12
  for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; p++) {
    __m512bh b0 = (__m512bh)_mm512_load_si512(bp + p * NR), b1 = (__m512bh)_mm512_load_si512(bp + p * NR + 16);
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
      __m512bh a = (__m512bh)_mm512_set1_epi32((int)ap[p * MR + i]);
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], a, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], a, b1);
    }
  }
  __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1u);
  __mmask16 m1 = nr >= 32 ? 0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1u);
  __m512 vb = _mm512_set1_ps(beta);
  for (int64_t i = 0; i < mr; i++) {
    float *row = c + i * ldc;
    __m512 r0 = acc[i][0], r1 = acc[i][1];
    if (beta != 0.0f) {
      r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, row), r0);
      r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, row + 16), r1);
    }
    _mm512_mask_storeu_ps(row, m0, r0);
    _mm512_mask_storeu_ps(row + 16, m1, r1);
  }
}

const vl_bf16_kernels vl_kernels_avx512bf16 = {MR, NR, pack_b, micro};

/*
 * Decode with 4-bit weights of bfloat16 values at bfloat16 compute: per block the 16 weights it can hold,
 * bfloat16(code[q] · scale), are rounded into a table of bfloat16 words (VCVTNEPS2BF16, nearest even), each packed
 * byte widened to a 16-bit lane indexes it twice (high nibble: value 2i; low nibble: value 2i + 1; vpermw) and
 * VDPBF16PS multiplies the looked-up pairs with x's, exactly, summing in float32: half the instructions of the float32
 * kernel per weight. x is split per 64 values into its 32 even entries and its 32 odd ones as bfloat16.
 * Subnormal bfloat16 inputs count as zero in these instructions (as in the bfloat16-compute GEMM above).
 */
static void split_x_bf16(int64_t K, const float *x, uint16_t *dst) {
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t k = 0; k < K; k += 64)
    for (int h = 0; h < 2; h++) {
      __m512 lo = _mm512_loadu_ps(x + k + 32 * h), hi = _mm512_loadu_ps(x + k + 32 * h + 16);
      _mm256_storeu_si256((__m256i *)(dst + k + 16 * h), (__m256i)_mm512_cvtneps_pbh(_mm512_permutex2var_ps(lo, even, hi)));
      _mm256_storeu_si256((__m256i *)(dst + k + 32 + 16 * h), (__m256i)_mm512_cvtneps_pbh(_mm512_permutex2var_ps(lo, odd, hi)));
    }
}

static inline __m512i table_bf16(__m512 code, float scale) {
  return _mm512_zextsi256_si512((__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(code, _mm512_set1_ps(scale))));
}

int64_t vl_q4_decode_bf16(int64_t K, const float *x, const vl_bmat *B, int64_t n0, int64_t n1, float *C, float beta) {
  if (!vl_q4_decode_bf16_applies(K, B) || n1 - n0 < 2) return 0;
  uint16_t *X = aligned_alloc(64, (size_t)K * sizeof(uint16_t));
  if (!X) return 0;
  split_x_bf16(K, x, X);
  const __m512 code = _mm512_loadu_ps(B->code);
  const __m512i low = _mm512_set1_epi16(15);
  const int64_t block = B->block, blocks = K / block, row_bytes = B->ld >> 1;
  int64_t n = n0;
  for (; n + 2 <= n1; n += 2) {
    const uint8_t *row0 = (const uint8_t *)B->data + n * row_bytes, *row1 = row0 + row_bytes;
    const float *s0 = B->scales + n * blocks, *s1 = s0 + blocks;
    __m512 h0 = _mm512_setzero_ps(), l0 = h0, h1 = h0, l1 = h0;
    for (int64_t k0 = 0, b = 0; k0 < K; k0 += block, b++) {
      if ((b & 15) == 0) { /* the next pair of rows, as in the float32 kernel */
        _mm_prefetch((const char *)(s0 + 2 * blocks + b), _MM_HINT_T0);
        _mm_prefetch((const char *)(s1 + 2 * blocks + b), _MM_HINT_T0);
      }
      const __m512i t0 = table_bf16(code, s0[b]), t1 = table_bf16(code, s1[b]);
      for (int64_t k = k0; k < k0 + block; k += 64) {
        if ((k & 127) == 0) {
          _mm_prefetch((const char *)(row0 + 2 * row_bytes + (k >> 1)), _MM_HINT_T0);
          _mm_prefetch((const char *)(row1 + 2 * row_bytes + (k >> 1)), _MM_HINT_T0);
        }
        const __m512bh xh = (__m512bh)_mm512_load_si512(X + k), xl = (__m512bh)_mm512_load_si512(X + k + 32);
        const __m512i v0 = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(row0 + (k >> 1))));
        const __m512i v1 = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(row1 + (k >> 1))));
        h0 = _mm512_dpbf16_ps(h0, xh, (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(v0, 4), t0));
        l0 = _mm512_dpbf16_ps(l0, xl, (__m512bh)_mm512_permutexvar_epi16(_mm512_and_si512(v0, low), t0));
        h1 = _mm512_dpbf16_ps(h1, xh, (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(v1, 4), t1));
        l1 = _mm512_dpbf16_ps(l1, xl, (__m512bh)_mm512_permutexvar_epi16(_mm512_and_si512(v1, low), t1));
      }
    }
    C[n] = (beta == 0.0f ? 0.0f : beta * C[n]) + _mm512_reduce_add_ps(_mm512_add_ps(h0, l0));
    C[n + 1] = (beta == 0.0f ? 0.0f : beta * C[n + 1]) + _mm512_reduce_add_ps(_mm512_add_ps(h1, l1));
  }
  free(X);
  return n - n0;
}

#pragma GCC pop_options
#else
const vl_bf16_kernels vl_kernels_avx512bf16 = {0, 0, 0, 0};
int64_t vl_q4_decode_bf16(int64_t K, const float *x, const vl_bmat *B, int64_t n0, int64_t n1, float *C, float beta) {
  (void)K, (void)x, (void)B, (void)n0, (void)n1, (void)C, (void)beta;
  return 0;
}
#endif
