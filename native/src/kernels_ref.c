/*
 * The portable kernels: plain C that any compiler vectorises as it can. They are the fallback on every CPU
 * and the reference every vectorised path is tested against.
 */
#include <string.h>
#include "vl.h"

#define MR 4
#define NR 16

static void pack_b(const vl_bmat *b, int64_t k0, int64_t kc, int64_t n0, int64_t nr, float *dst, int compute) {
  (void)compute;
  for (int64_t k = 0; k < kc; k++) {
    for (int64_t j = 0; j < nr; j++) dst[k * NR + j] = vl_bmat_get(b, k0 + k, n0 + j);
    for (int64_t j = nr; j < NR; j++) dst[k * NR + j] = 0.0f;
  }
}

static void micro(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, int64_t mr, int64_t nr, float beta) {
  float acc[MR][NR];
  memset(acc, 0, sizeof acc);
  for (int64_t k = 0; k < kc; k++) {
    const float *a = ap + k * MR, *b = bp + k * NR;
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++) acc[i][j] += a[i] * b[j];
  }
  for (int64_t i = 0; i < mr; i++) {
    float *row = c + i * ldc;
    for (int64_t j = 0; j < nr; j++) row[j] = (beta == 0.0f ? 0.0f : beta * row[j]) + acc[i][j];
  }
}


static void small_dot(int64_t M, int64_t K, const float *A, int64_t lda, const vl_bmat *B, int64_t n0, int64_t n1,
                      float *C, int64_t ldc, float beta, int compute) {
  (void)compute;
  float w[1024];
  for (int64_t n = n0; n < n1; n++) {
    float acc[VL_SMALL_M] = {0};
    for (int64_t k0 = 0; k0 < K; k0 += 1024) {
      int64_t kc = K - k0 < 1024 ? K - k0 : 1024;
      vl_bmat_row(B, n, k0, kc, w);
      for (int64_t m = 0; m < M; m++) {
        const float *a = A + m * lda + k0;
        float s = 0.0f;
        for (int64_t k = 0; k < kc; k++) s += a[k] * w[k];
        acc[m] += s;
      }
    }
    for (int64_t m = 0; m < M; m++) {
      float *out = C + m * ldc + n;
      *out = (beta == 0.0f ? 0.0f : beta * *out) + acc[m];
    }
  }
}

static void small_axpy(int64_t M, int64_t K, const float *A, int64_t lda, const vl_bmat *B, int64_t n0, int64_t n1,
                       float *C, int64_t ldc, float beta, int compute) {
  (void)compute;
  float w[1024];
  for (int64_t c0 = n0; c0 < n1; c0 += 1024) {
    int64_t nc = n1 - c0 < 1024 ? n1 - c0 : 1024;
    for (int64_t m = 0; m < M; m++) {
      float *out = C + m * ldc + c0;
      for (int64_t j = 0; j < nc; j++) out[j] = beta == 0.0f ? 0.0f : beta * out[j];
    }
    for (int64_t k = 0; k < K; k++) {
      vl_bmat_row(B, k, c0, nc, w);
      for (int64_t m = 0; m < M; m++) {
        float a = A[m * lda + k], *out = C + m * ldc + c0;
        for (int64_t j = 0; j < nc; j++) out[j] += a * w[j];
      }
    }
  }
}

const vl_kernels vl_kernels_ref = {MR, NR, pack_b, micro, small_dot, small_axpy};
