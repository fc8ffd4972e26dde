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

#pragma GCC pop_options
#else
const vl_bf16_kernels vl_kernels_avx512bf16 = {0, 0, 0, 0};
#endif
