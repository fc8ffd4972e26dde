/*
 * AVX2 kernels (AVX2 + FMA + F16C: Intel since Haswell, AMD since Zen), for CPUs without AVX-512: most laptops and
 * desktops. Same contracts as kernels_ref.c, which the tests compare them with; tails (columns, k) fall back to
 * scalar code since AVX2 has no masked 16-bit loads.
 */
#include "vl.h"

#if defined(__x86_64__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#include <immintrin.h>
#include <string.h>

#define MR 6
#define NR 16

/* 8 consecutive stored values widened to float32 (all 8 must exist). */
static inline __m256 load8(int format, const void *base, int64_t i) {
  switch (format) {
    case VL_BF16:
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i))), 16));
    case VL_F16:
      return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
    default:
      return _mm256_loadu_ps((const float *)base + i);
  }
}

/* In place: r[i][j] → r[j][i] for an 8 × 8 block of floats. */
static inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int g = 0; g < 2; g++) {
    u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  /* u[4g + c] lane L (128-bit) holds column 4L + c of rows 4g..4g+3 */
  for (int c = 0; c < 4; c++) {
    r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}

static void pack_b(const vl_bmat *b, int64_t k0, int64_t kc, int64_t n0, int64_t nr, float *dst, int compute) {
  (void)compute;
  int64_t k = 0;
  if (nr == NR) {
    if (!b->trans) {
      for (; k < kc; k++) {
        int64_t base = (k0 + k) * b->ld + n0;
        _mm256_store_ps(dst + k * NR, load8(b->format, b->data, base));
        _mm256_store_ps(dst + k * NR + 8, load8(b->format, b->data, base + 8));
      }
      return;
    }
    for (; k + 8 <= kc; k += 8) {
      for (int half = 0; half < 2; half++) {
        __m256 r[8];
        for (int i = 0; i < 8; i++) r[i] = load8(b->format, b->data, (n0 + half * 8 + i) * b->ld + k0 + k);
        transpose8(r);
        for (int c = 0; c < 8; c++) _mm256_store_ps(dst + (k + c) * NR + half * 8, r[c]);
      }
    }
  }
  for (; k < kc; k++) {
    for (int64_t j = 0; j < nr; j++) dst[k * NR + j] = vl_bmat_get(b, k0 + k, n0 + j);
    for (int64_t j = nr; j < NR; j++) dst[k * NR + j] = 0.0f;
  }
}

static void micro(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, int64_t mr, int64_t nr, float beta) {
  __m256 acc[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; k++) {
    __m256 b0 = _mm256_load_ps(bp + k * NR), b1 = _mm256_load_ps(bp + k * NR + 8);
    const float *a = ap + k * MR;
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
      __m256 ai = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
  for (int64_t i = 0; i < mr; i++) {
    float *row = c + i * ldc;
    if (nr == NR) {
      __m256 r0 = acc[i][0], r1 = acc[i][1];
      if (beta != 0.0f) {
        __m256 vb = _mm256_set1_ps(beta);
        r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(row), r0);
        r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(row + 8), r1);
      }
      _mm256_storeu_ps(row, r0);
      _mm256_storeu_ps(row + 8, r1);
    } else {
      float tmp[NR];
      _mm256_storeu_ps(tmp, acc[i][0]);
      _mm256_storeu_ps(tmp + 8, acc[i][1]);
      for (int64_t j = 0; j < nr; j++) row[j] = (beta == 0.0f ? 0.0f : beta * row[j]) + tmp[j];
    }
  }
}

static inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* Two rows of storage at a time, k in steps of 8, the tail scalar. */
static inline void dot_rows(int M, int rows, int64_t K, const float *A, int64_t lda, const vl_bmat *B, int64_t n, float *C,
                            int64_t ldc, float beta) {
  __m256 acc[VL_SMALL_M][2];
  for (int m = 0; m < VL_SMALL_M; m++) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 x[VL_SMALL_M];
    for (int m = 0; m < M; m++) x[m] = _mm256_loadu_ps(A + m * lda + k);
    for (int j = 0; j < rows; j++) {
      __m256 w = load8(B->format, B->data, (n + j) * B->ld + k);
      for (int m = 0; m < M; m++) acc[m][j] = _mm256_fmadd_ps(x[m], w, acc[m][j]);
    }
  }
  for (int m = 0; m < M; m++)
    for (int j = 0; j < rows; j++) {
      float s = hsum(acc[m][j]);
      for (int64_t t = k; t < K; t++) s += A[m * lda + t] * vl_bmat_get(B, t, n + j);
      float *out = C + m * ldc + n + j;
      *out = (beta == 0.0f ? 0.0f : beta * *out) + s;
    }
}

static void small_dot(int64_t M, int64_t K, const float *A, int64_t lda, const vl_bmat *B, int64_t n0, int64_t n1,
                      float *C, int64_t ldc, float beta, int compute) {
  (void)compute;
  int64_t n = n0;
#define DOT_CASES(ROWS)                                               \
  switch (M) {                                                        \
    case 1: dot_rows(1, ROWS, K, A, lda, B, n, C, ldc, beta); break;  \
    case 2: dot_rows(2, ROWS, K, A, lda, B, n, C, ldc, beta); break;  \
    case 3: dot_rows(3, ROWS, K, A, lda, B, n, C, ldc, beta); break;  \
    default: dot_rows(4, ROWS, K, A, lda, B, n, C, ldc, beta); break; \
  }
  for (; n + 2 <= n1; n += 2) DOT_CASES(2)
  for (; n < n1; n++) DOT_CASES(1)
#undef DOT_CASES
}

/* 16 columns at a time; a partial last block goes scalar. */
static inline void axpy_block(int M, int64_t K, const float *A, int64_t lda, const vl_bmat *B, int64_t c0, float *C, int64_t ldc,
                              float beta) {
  __m256 acc[VL_SMALL_M][2];
  for (int m = 0; m < VL_SMALL_M; m++) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; k++) {
    __m256 w0 = load8(B->format, B->data, k * B->ld + c0), w1 = load8(B->format, B->data, k * B->ld + c0 + 8);
    for (int m = 0; m < M; m++) {
      __m256 a = _mm256_broadcast_ss(A + m * lda + k);
      acc[m][0] = _mm256_fmadd_ps(a, w0, acc[m][0]);
      acc[m][1] = _mm256_fmadd_ps(a, w1, acc[m][1]);
    }
  }
  for (int m = 0; m < M; m++) {
    float *out = C + m * ldc + c0;
    __m256 r0 = acc[m][0], r1 = acc[m][1];
    if (beta != 0.0f) {
      r0 = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(out), r0);
      r1 = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(out + 8), r1);
    }
    _mm256_storeu_ps(out, r0);
    _mm256_storeu_ps(out + 8, r1);
  }
}

static void small_axpy(int64_t M, int64_t K, const float *A, int64_t lda, const vl_bmat *B, int64_t n0, int64_t n1,
                       float *C, int64_t ldc, float beta, int compute) {
  int64_t c0 = n0;
  for (; c0 + 16 <= n1; c0 += 16) {
    switch (M) {
      case 1: axpy_block(1, K, A, lda, B, c0, C, ldc, beta); break;
      case 2: axpy_block(2, K, A, lda, B, c0, C, ldc, beta); break;
      case 3: axpy_block(3, K, A, lda, B, c0, C, ldc, beta); break;
      default: axpy_block(4, K, A, lda, B, c0, C, ldc, beta); break;
    }
  }
  if (c0 < n1) vl_kernels_ref.small_axpy(M, K, A, lda, B, c0, n1, C, ldc, beta, compute);
}

const vl_kernels vl_kernels_avx2 = {MR, NR, pack_b, micro, small_dot, small_axpy};

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
const vl_kernels vl_kernels_avx2 = {4, 16, 0, 0, 0, 0};
#endif
