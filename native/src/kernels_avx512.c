/*
 * AVX-512 kernels (F, BW, VL, DQ + FMA + F16C), compiled for that ISA whatever the build flags and used only
 * where vl_cpu() reports it. Same contracts as kernels_ref.c, which the tests compare them with.
 */
#if defined(__x86_64__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c,avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c,avx2")
#endif
#include <immintrin.h>
#include <string.h>
#include "vl.h"
#include "avx512_util.h"

#define MR 12
#define NR 32

/* 16 consecutive stored values (k or n direction) widened to float32; `mask` selects the ones that exist. */
static inline __m512 load16(int format, const void *base, int64_t i, __mmask16 mask) {
  switch (format) {
    case VL_BF16: {
      __m256i h = _mm256_maskz_loadu_epi16(mask, (const uint16_t *)base + i);
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    case VL_F16:
      return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, (const uint16_t *)base + i));
    default:
      return _mm512_maskz_loadu_ps(mask, (const float *)base + i);
  }
}

static inline __mmask16 tail_mask(int64_t count) {
  return count >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << count) - 1u);
}

static void pack_b_quant(const vl_bmat *b, int64_t k0, int64_t kc, int64_t n0, int64_t nr, float *dst) {
  int64_t k = 0;
  if (nr == NR && quant_vectors(b) && k0 % 16 == 0 && (b->trans || n0 % 16 == 0)) {
    if (!b->trans) {
      for (; k < kc; k++) {
        _mm512_store_ps(dst + k * NR, dequant16(b, k0 + k, n0));
        _mm512_store_ps(dst + k * NR + 16, dequant16(b, k0 + k, n0 + 16));
      }
      return;
    }
    for (; k + 16 <= kc; k += 16) {
      for (int half = 0; half < 2; half++) {
        __m512 r[16];
        for (int i = 0; i < 16; i++) r[i] = dequant16(b, n0 + half * 16 + i, k0 + k);
        transpose16(r);
        for (int c = 0; c < 16; c++) _mm512_store_ps(dst + (k + c) * NR + half * 16, r[c]);
      }
    }
  }
  for (; k < kc; k++) {
    for (int64_t j = 0; j < nr; j++) dst[k * NR + j] = vl_bmat_get(b, k0 + k, n0 + j);
    for (int64_t j = nr; j < NR; j++) dst[k * NR + j] = 0.0f;
  }
}

static void pack_b(const vl_bmat *b, int64_t k0, int64_t kc, int64_t n0, int64_t nr, float *dst, int compute) {
  (void)compute;
  if (b->format == VL_Q4 || b->format == VL_I8) {
    pack_b_quant(b, k0, kc, n0, nr, dst);
    return;
  }
  if (!b->trans) {
    /* Rows of storage run along n: each packed row is a widened copy. */
    for (int64_t k = 0; k < kc; k++) {
      int64_t base = (k0 + k) * b->ld + n0;
      _mm512_store_ps(dst + k * NR, load16(b->format, b->data, base, tail_mask(nr)));
      _mm512_store_ps(dst + k * NR + 16, load16(b->format, b->data, base + 16, tail_mask(nr - 16 > 0 ? nr - 16 : 0)));
    }
    return;
  }
  /* Rows of storage run along k: widen 16 × 16 blocks and transpose them. */
  int64_t k = 0;
  if (nr == NR) {
    for (; k + 16 <= kc; k += 16) {
      for (int half = 0; half < 2; half++) {
        __m512 r[16];
        for (int i = 0; i < 16; i++) r[i] = load16(b->format, b->data, (n0 + half * 16 + i) * b->ld + k0 + k, 0xffff);
        transpose16(r);
        for (int c = 0; c < 16; c++) _mm512_store_ps(dst + (k + c) * NR + half * 16, r[c]);
      }
    }
  }
  for (; k < kc; k++) {
    for (int64_t j = 0; j < nr; j++) dst[k * NR + j] = vl_bmat_get(b, k0 + k, n0 + j);
    for (int64_t j = nr; j < NR; j++) dst[k * NR + j] = 0.0f;
  }
}

static void micro(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, int64_t mr, int64_t nr, float beta) {
  __m512 acc[MR][2];
#pragma GCC unroll 12
  for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_load_ps(bp + k * NR), b1 = _mm512_load_ps(bp + k * NR + 16);
    const float *a = ap + k * MR;
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
      __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
  __mmask16 m0 = tail_mask(nr), m1 = tail_mask(nr > 16 ? nr - 16 : 0);
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

/* ---- small M: a dot product per output, four rows of storage at a time -------------------------------------- */

static inline void dot_rows(int M, int rows, int64_t K, const float *A, int64_t lda, const vl_bmat *B, int64_t n,
                            float *C, int64_t ldc, float beta) {
  __m512 acc[VL_SMALL_M][4];
  for (int m = 0; m < VL_SMALL_M; m++)
    for (int j = 0; j < 4; j++) acc[m][j] = _mm512_setzero_ps();
  const int f = B->format;
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m512 xa[VL_SMALL_M], xb[VL_SMALL_M];
    for (int m = 0; m < M; m++) {
      xa[m] = _mm512_loadu_ps(A + m * lda + k);
      xb[m] = _mm512_loadu_ps(A + m * lda + k + 16);
    }
    for (int j = 0; j < rows; j++) {
      int64_t base = (n + j) * B->ld + k;
      /* the next group of rows at the same offset (see dot_rows_q4): one line of 16-bit values, two of float32 */
      const char *ahead = (const char *)B->data + (base + rows * B->ld) * (f == VL_F32 ? 4 : 2);
      _mm_prefetch(ahead, _MM_HINT_T0);
      if (f == VL_F32) _mm_prefetch(ahead + 64, _MM_HINT_T0);
      __m512 wa, wb;
      if (f == VL_BF16) {
        __m512i v = _mm512_loadu_si512((const uint16_t *)B->data + base);
        wa = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(v)), 16));
        wb = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(v, 1)), 16));
      } else {
        wa = load16(f, B->data, base, 0xffff);
        wb = load16(f, B->data, base + 16, 0xffff);
      }
      for (int m = 0; m < M; m++) acc[m][j] = _mm512_fmadd_ps(xb[m], wb, _mm512_fmadd_ps(xa[m], wa, acc[m][j]));
    }
  }
  for (; k < K; k += 16) {
    __mmask16 mask = tail_mask(K - k);
    for (int j = 0; j < rows; j++) {
      __m512 w = load16(f, B->data, (n + j) * B->ld + k, mask);
      for (int m = 0; m < M; m++) acc[m][j] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, A + m * lda + k), w, acc[m][j]);
    }
  }
  for (int m = 0; m < M; m++)
    for (int j = 0; j < rows; j++) {
      float *out = C + m * ldc + n + j;
      *out = (beta == 0.0f ? 0.0f : beta * *out) + _mm512_reduce_add_ps(acc[m][j]);
    }
}

/* Two rows of dot products per m: C[m][n + j] = beta·C + the sum of acc[m][j]'s lanes. */
static inline void store_dot_pairs(int M, __m512 acc[VL_SMALL_M][2], int64_t n, float *C, int64_t ldc, float beta) {
  for (int m = 0; m < M; m++)
    for (int j = 0; j < 2; j++) {
      float *out = C + m * ldc + n + j;
      *out = (beta == 0.0f ? 0.0f : beta * *out) + _mm512_reduce_add_ps(acc[m][j]);
    }
}

/* Quantized rows: 16 values at a time through dequant16 (K a multiple of 16). */
static inline void dot_rows_quant(int M, int64_t K, const float *A, int64_t lda, const vl_bmat *B, int64_t n, float *C,
                                  int64_t ldc, float beta) {
  __m512 acc[VL_SMALL_M][2];
  for (int m = 0; m < VL_SMALL_M; m++) acc[m][0] = acc[m][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 16) {
    if (B->format == VL_I8 && (k & 63) == 0) { /* the next pair of rows, as in dot_rows_q4 */
      _mm_prefetch((const char *)B->data + (n + 2) * B->ld + k, _MM_HINT_T0);
      _mm_prefetch((const char *)B->data + (n + 3) * B->ld + k, _MM_HINT_T0);
    }
    __m512 w0 = dequant16(B, n, k), w1 = dequant16(B, n + 1, k);
    for (int m = 0; m < M; m++) {
      __m512 x = _mm512_loadu_ps(A + m * lda + k);
      acc[m][0] = _mm512_fmadd_ps(x, w0, acc[m][0]);
      acc[m][1] = _mm512_fmadd_ps(x, w1, acc[m][1]);
    }
  }
  store_dot_pairs(M, acc, n, C, ldc, beta);
}

/*
 * x for 4-bit rows: every 32 values of a row of A as its 16 even entries, then its 16 odd ones — the order of the
 * high and the low nibbles of 16 packed bytes (byte i holds value 2i in its high nibble, 2i + 1 in its low one), so
 * a row of the weight needs no interleaving. dst[m][K].
 */
static void q4_split_x(int M, int64_t K, const float *A, int64_t lda, float *dst) {
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int m = 0; m < M; m++)
    for (int64_t k = 0; k < K; k += 32) {
      __m512 lo = _mm512_loadu_ps(A + m * lda + k), hi = _mm512_loadu_ps(A + m * lda + k + 16);
      _mm512_storeu_ps(dst + m * K + k, _mm512_permutex2var_ps(lo, even, hi));
      _mm512_storeu_ps(dst + m * K + k + 16, _mm512_permutex2var_ps(lo, odd, hi));
    }
}

/* bfloat16 rounding (ties to even on the bit pattern) of lanes that are not NaN: round_lanes without its NaN
 * handling, for tables whose scale is finite (an infinite product rounds to itself, as in round_lanes). */
static inline __m512 round_bf16_not_nan(__m512 v) {
  __m512i u = _mm512_castps_si512(v);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
  return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32((int)0xffff0000u)));
}

/* Table rounding of dot_rows_q4: the stored dtype's (round_lanes), or Q4_BF16_FINITE where every scale is finite. */
enum { Q4_BF16_FINITE = -1 };

static int all_finite(const float *s, int64_t n) {
  const __m512i exponent = _mm512_set1_epi32(0x7f800000);
  __mmask16 bad = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) bad |= _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_loadu_si512(s + i), exponent), exponent);
  for (; i < n; i++) bad |= !__builtin_isfinite(s[i]);
  return bad == 0;
}

/*
 * 4-bit rows whose blocks do not straddle rows (K a multiple of the block, the block of 32s): per block the 16
 * values it can hold, round(code[q] · scale), are made once (the same float32 operations dequant16 does lane by
 * lane), and every weight is then one table lookup. 16 packed bytes are widened once to 32-bit lanes; vpermps
 * reads only the low 4 bits of an index, so the lanes index the low nibbles as they are and the high ones after a
 * shift. X is q4_split_x's order; even and odd entries keep their own sums (no chain of dependent adds). Inlined
 * for each constant M and rounding (a shared body kept M and the rounding as branches and ran at a third of the
 * speed).
 */
static inline __attribute__((always_inline)) void dot_rows_q4(int M, int rnd, int64_t K, const float *X, const vl_bmat *B,
                                                              int64_t n, float *C, int64_t ldc, float beta) {
  __m512 acc[VL_SMALL_M][2], odd[VL_SMALL_M][2];
  for (int m = 0; m < VL_SMALL_M; m++) acc[m][0] = acc[m][1] = odd[m][0] = odd[m][1] = _mm512_setzero_ps();
  const __m512 code = _mm512_loadu_ps(B->code);
  const int64_t block = B->block;
  const uint8_t *row0 = (const uint8_t *)B->data + ((n * B->ld) >> 1), *row1 = row0 + (B->ld >> 1);
  const float *s0 = B->scales + n * B->ld / block, *s1 = B->scales + (n + 1) * B->ld / block;
  /* The next pair of rows is fetched at the same offset while this one is read: without it a thread's reads wait on
   * memory latency (1.5x on a 7B layer's products here, where the hardware prefetcher alone reached ~60 % of the
   * bandwidth). Prefetches past the matrix do not fault. */
  const int64_t next_bytes = B->ld, next_scales = 2 * B->ld / block;
  for (int64_t k0 = 0, b = 0; k0 < K; k0 += block, b++) {
    __m512 t0 = _mm512_mul_ps(code, _mm512_set1_ps(s0[b])), t1 = _mm512_mul_ps(code, _mm512_set1_ps(s1[b]));
    if (rnd == Q4_BF16_FINITE) {
      t0 = round_bf16_not_nan(t0);
      t1 = round_bf16_not_nan(t1);
    } else {
      t0 = round_lanes(rnd, t0);
      t1 = round_lanes(rnd, t1);
    }
    if ((b & 15) == 0) {
      _mm_prefetch((const char *)(s0 + next_scales + b), _MM_HINT_T0);
      _mm_prefetch((const char *)(s1 + next_scales + b), _MM_HINT_T0);
    }
    for (int64_t k = k0; k < k0 + block; k += 32) {
      if ((k & 127) == 0) {
        _mm_prefetch((const char *)(row0 + next_bytes + (k >> 1)), _MM_HINT_T0);
        _mm_prefetch((const char *)(row1 + next_bytes + (k >> 1)), _MM_HINT_T0);
      }
      __m512i c0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row0 + (k >> 1))));
      __m512i c1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row1 + (k >> 1))));
      __m512 h0 = _mm512_permutexvar_ps(_mm512_srli_epi32(c0, 4), t0), l0 = _mm512_permutexvar_ps(c0, t0);
      __m512 h1 = _mm512_permutexvar_ps(_mm512_srli_epi32(c1, 4), t1), l1 = _mm512_permutexvar_ps(c1, t1);
      for (int m = 0; m < M; m++) {
        __m512 xe = _mm512_loadu_ps(X + m * K + k), xo = _mm512_loadu_ps(X + m * K + k + 16);
        acc[m][0] = _mm512_fmadd_ps(xe, h0, acc[m][0]);
        odd[m][0] = _mm512_fmadd_ps(xo, l0, odd[m][0]);
        acc[m][1] = _mm512_fmadd_ps(xe, h1, acc[m][1]);
        odd[m][1] = _mm512_fmadd_ps(xo, l1, odd[m][1]);
      }
    }
  }
  for (int m = 0; m < M; m++) {
    acc[m][0] = _mm512_add_ps(acc[m][0], odd[m][0]);
    acc[m][1] = _mm512_add_ps(acc[m][1], odd[m][1]);
  }
  store_dot_pairs(M, acc, n, C, ldc, beta);
}

#define Q4_ROUNDINGS(M)                                                                           \
  static void dot_rows_q4_##M(int rnd, int64_t K, const float *X, const vl_bmat *B, int64_t n, float *C, \
                              int64_t ldc, float beta) {                                          \
    switch (rnd) {                                                                                \
      case Q4_BF16_FINITE: dot_rows_q4(M, Q4_BF16_FINITE, K, X, B, n, C, ldc, beta); break;       \
      case VL_BF16: dot_rows_q4(M, VL_BF16, K, X, B, n, C, ldc, beta); break;                     \
      case VL_F16: dot_rows_q4(M, VL_F16, K, X, B, n, C, ldc, beta); break;                       \
      default: dot_rows_q4(M, VL_F32, K, X, B, n, C, ldc, beta); break;                           \
    }                                                                                             \
  }
Q4_ROUNDINGS(1)
Q4_ROUNDINGS(2)
Q4_ROUNDINGS(3)
Q4_ROUNDINGS(4)
#undef Q4_ROUNDINGS

static void small_dot(int64_t M, int64_t K, const float *A, int64_t lda, const vl_bmat *B, int64_t n0, int64_t n1,
                      float *C, int64_t ldc, float beta, int compute) {
  (void)compute;
  int64_t n = n0;
  if (B->format == VL_Q4 || B->format == VL_I8) {
    if (!quant_vectors(B) || K % 16 != 0) {
      vl_kernels_ref.small_dot(M, K, A, lda, B, n0, n1, C, ldc, beta, compute);
      return;
    }
    float *X = B->format == VL_Q4 && B->ld == K && K % B->block == 0 && B->block % 32 == 0 && n1 - n0 >= 2
                   ? aligned_alloc(64, (size_t)M * (size_t)K * sizeof(float))
                   : NULL;
    if (X) {
      q4_split_x((int)M, K, A, lda, X);
      for (; n + 2 <= n1; n += 2) {
        const int64_t blocks = K / B->block;
        int rnd = B->round == VL_BF16 && all_finite(B->scales + n * blocks, 2 * blocks) ? Q4_BF16_FINITE : B->round;
        switch (M) {
          case 1: dot_rows_q4_1(rnd, K, X, B, n, C, ldc, beta); break;
          case 2: dot_rows_q4_2(rnd, K, X, B, n, C, ldc, beta); break;
          case 3: dot_rows_q4_3(rnd, K, X, B, n, C, ldc, beta); break;
          default: dot_rows_q4_4(rnd, K, X, B, n, C, ldc, beta); break;
        }
      }
      free(X);
    }
    for (; n + 2 <= n1; n += 2) {
      switch (M) {
        case 1: dot_rows_quant(1, K, A, lda, B, n, C, ldc, beta); break;
        case 2: dot_rows_quant(2, K, A, lda, B, n, C, ldc, beta); break;
        case 3: dot_rows_quant(3, K, A, lda, B, n, C, ldc, beta); break;
        default: dot_rows_quant(4, K, A, lda, B, n, C, ldc, beta); break;
      }
    }
    if (n < n1) vl_kernels_ref.small_dot(M, K, A, lda, B, n, n1, C, ldc, beta, compute);
    return;
  }
  /* Constant M and row counts so that the compiler keeps the accumulators in registers. */
#define DOT_CASES(ROWS)                                                       \
  switch (M) {                                                                \
    case 1: dot_rows(1, ROWS, K, A, lda, B, n, C, ldc, beta); break;          \
    case 2: dot_rows(2, ROWS, K, A, lda, B, n, C, ldc, beta); break;          \
    case 3: dot_rows(3, ROWS, K, A, lda, B, n, C, ldc, beta); break;          \
    default: dot_rows(4, ROWS, K, A, lda, B, n, C, ldc, beta); break;         \
  }
  for (; n + 4 <= n1; n += 4) DOT_CASES(4)
  for (; n < n1; n++) DOT_CASES(1)
#undef DOT_CASES
}

/* ---- small M: rows of storage scaled by A's entries and summed, 64 columns at a time ------------------------- */

static inline void axpy_block(int M, int64_t K, const float *A, int64_t lda, const vl_bmat *B, int64_t c0, int64_t nc,
                              float *C, int64_t ldc, float beta) {
  __m512 acc[VL_SMALL_M][4];
  __mmask16 mask[4];
  for (int j = 0; j < 4; j++) mask[j] = tail_mask(nc - 16 * j > 0 ? nc - 16 * j : 0);
  for (int m = 0; m < VL_SMALL_M; m++)
    for (int j = 0; j < 4; j++) acc[m][j] = _mm512_setzero_ps();
  const int quant = B->format == VL_Q4 || B->format == VL_I8;
  for (int64_t k = 0; k < K; k++) {
    __m512 w[4];
    for (int j = 0; j < 4; j++) w[j] = quant ? dequant16(B, k, c0 + 16 * j) : load16(B->format, B->data, k * B->ld + c0 + 16 * j, mask[j]);
    for (int m = 0; m < M; m++) {
      __m512 a = _mm512_set1_ps(A[m * lda + k]);
      for (int j = 0; j < 4; j++) acc[m][j] = _mm512_fmadd_ps(a, w[j], acc[m][j]);
    }
  }
  __m512 vb = _mm512_set1_ps(beta);
  for (int m = 0; m < M; m++)
    for (int j = 0; j < 4; j++) {
      float *out = C + m * ldc + c0 + 16 * j;
      __m512 r = acc[m][j];
      if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[j], out), r);
      _mm512_mask_storeu_ps(out, mask[j], r);
    }
}

static void small_axpy(int64_t M, int64_t K, const float *A, int64_t lda, const vl_bmat *B, int64_t n0, int64_t n1,
                       float *C, int64_t ldc, float beta, int compute) {
  if ((B->format == VL_Q4 || B->format == VL_I8) && !(quant_vectors(B) && n0 % 16 == 0 && (n1 - n0) % 64 == 0)) {
    vl_kernels_ref.small_axpy(M, K, A, lda, B, n0, n1, C, ldc, beta, compute);
    return;
  }
  for (int64_t c0 = n0; c0 < n1; c0 += 64) {
    int64_t nc = n1 - c0 < 64 ? n1 - c0 : 64;
    switch (M) {
      case 1: axpy_block(1, K, A, lda, B, c0, nc, C, ldc, beta); break;
      case 2: axpy_block(2, K, A, lda, B, c0, nc, C, ldc, beta); break;
      case 3: axpy_block(3, K, A, lda, B, c0, nc, C, ldc, beta); break;
      default: axpy_block(4, K, A, lda, B, c0, nc, C, ldc, beta); break;
    }
  }
}

const vl_kernels vl_kernels_avx512 = {MR, NR, pack_b, micro, small_dot, small_axpy};

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else /* not x86-64: the table points at the portable kernels, and vl_cpu() never selects it */
#include "vl.h"
const vl_kernels vl_kernels_avx512 = {4, 16, 0, 0, 0, 0};
#endif
