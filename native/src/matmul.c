/*
 * The product driver: picks the kernel family (vl_isa), the shape regime and the split over threads.
 *
 *   small M (decode: a few rows)  memory-bound; every stored byte is read once, widened in registers
 *                                 (small_dot for Wᵀ, small_axpy for W), threads split the columns of C.
 *   larger M (prefill, training)  compute-bound; B is widened panel by panel into float32 (pack_b) and fed to
 *                                 a register-blocked micro-kernel, BLIS-style; threads split the columns of C.
 *                                 With AMX, bfloat16 weights go to kernels_amx.c instead.
 */
#include <stdlib.h>
#include <string.h>
#include "vl.h"

#define KC 256      /* k-block: a packed B sliver (KC × NR floats) stays in L1 */
#define MC 192      /* m-block: a packed A block (MC × KC floats) stays in L2 */
#define AMX_MIN_M 16

/* The kernel family for this product: quantized formats have AVX-512 and portable kernels only. */
static const vl_kernels *kernels(const vl_bmat *b) {
  int isa = vl_isa();
  if (isa >= VL_ISA_AVX512) return &vl_kernels_avx512;
  if (isa == VL_ISA_AVX2 && (b->format == VL_F32 || b->format == VL_BF16 || b->format == VL_F16)) return &vl_kernels_avx2;
  return &vl_kernels_ref;
}

static void scale_c(int64_t M, int64_t N, float *C, int64_t ldc, float beta) {
  for (int64_t m = 0; m < M; m++) {
    float *row = C + m * ldc;
    if (beta == 0.0f) memset(row, 0, (size_t)N * sizeof(float));
    else if (beta != 1.0f) for (int64_t n = 0; n < N; n++) row[n] *= beta;
  }
}

static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

/* Columns per task: enough tasks to balance the threads, each a multiple of the kernel's width. */
static int64_t chunk_width(int64_t N, int64_t unit, int64_t min_width) {
  int64_t threads = vl_threads();
  int64_t want = round_up((N + threads * 4 - 1) / (threads * 4), unit);
  if (want < min_width) want = min_width;
  return want;
}

/* ---- small M ----------------------------------------------------------------------------------------------- */

typedef struct {
  const vl_kernels *k;
  int64_t M, N, K;
  const float *A;
  int64_t lda;
  const vl_bmat *B;
  float *C;
  int64_t ldc;
  float beta;
  int64_t width;
  int q4_bf16; /* one row of bfloat16 compute with 4-bit weights of bfloat16 values: vl_q4_decode_bf16 */
} small_job;

static void small_task(void *ctx, int64_t t) {
  small_job *j = ctx;
  int64_t n0 = t * j->width, n1 = n0 + j->width < j->N ? n0 + j->width : j->N;
  if (j->q4_bf16) n0 += vl_q4_decode_bf16(j->K, j->A, j->B, n0, n1, j->C, j->beta);
  if (n0 >= n1) return;
  vl_small_fn fn = j->B->trans ? j->k->small_dot : j->k->small_axpy;
  fn(j->M, j->K, j->A, j->lda, j->B, n0, n1, j->C, j->ldc, j->beta, VL_COMPUTE_F32);
}

/* ---- packed GEMM ------------------------------------------------------------------------------------------- */

typedef struct {
  const vl_kernels *k;
  int64_t M, N, K;
  const float *A;
  int64_t lda;
  int transA;
  const vl_bmat *B;
  float *C;
  int64_t ldc;
  float beta;
  int64_t width;
  const vl_bf16_kernels *bf16; /* bfloat16 compute on VDPBF16PS: pairs along k instead of floats */
} gemm_job;

static void pack_a(const float *A, int64_t lda, int transA, int64_t m0, int64_t mc, int64_t k0, int64_t kc, int MR,
                   float *dst) {
  for (int64_t s = 0; s < mc; s += MR) {
    int64_t mr = mc - s < MR ? mc - s : MR;
    float *d = dst + s * kc;
    for (int64_t k = 0; k < kc; k++) {
      for (int64_t i = 0; i < mr; i++) {
        int64_t m = m0 + s + i, kk = k0 + k;
        d[k * MR + i] = transA ? A[kk * lda + m] : A[m * lda + kk];
      }
      for (int64_t i = mr; i < MR; i++) d[k * MR + i] = 0.0f;
    }
  }
}

/* A's rows as bfloat16 (even k, odd k) pairs: dst[p][MR], zero past mc and past kc. */
static void pack_a_pairs(const float *A, int64_t lda, int transA, int64_t m0, int64_t mc, int64_t k0, int64_t kc, int MR,
                         uint32_t *dst) {
  int64_t pairs = (kc + 1) / 2;
  for (int64_t s = 0; s < mc; s += MR) {
    int64_t mr = mc - s < MR ? mc - s : MR;
    uint32_t *d = dst + s * pairs;
    for (int64_t p = 0; p < pairs; p++) {
      for (int64_t i = 0; i < MR; i++) {
        uint32_t v = 0;
        if (i < mr) {
          int64_t m = m0 + s + i, k = k0 + 2 * p;
          float lo = transA ? A[k * lda + m] : A[m * lda + k];
          float hi = 2 * p + 1 < kc ? (transA ? A[(k + 1) * lda + m] : A[m * lda + k + 1]) : 0.0f;
          v = (uint32_t)vl_f32_to_bf16(lo) | ((uint32_t)vl_f32_to_bf16(hi) << 16);
        }
        d[p * MR + i] = v;
      }
    }
  }
}

static void gemm_task(void *ctx, int64_t t) {
  gemm_job *j = ctx;
  const vl_kernels *k = j->k;
  const vl_bf16_kernels *h = j->bf16;
  const int MR = h ? h->mr : k->mr, NR = h ? h->nr : k->nr;
  vl_pack_b_fn pack_b = h ? h->pack_b : k->pack_b;
  vl_micro_fn micro = h ? h->micro : k->micro;
  int64_t n0 = t * j->width, n1 = n0 + j->width < j->N ? n0 + j->width : j->N;
  int64_t nw = n1 - n0, slivers = (nw + NR - 1) / NR;
  int64_t kcmax = j->K < KC ? j->K : KC, mcmax = j->M < MC ? j->M : MC;
  float *bp = aligned_alloc(64, (size_t)round_up(slivers * NR * kcmax * sizeof(float), 64));
  float *ap = aligned_alloc(64, (size_t)round_up(round_up(mcmax, MR) * kcmax * sizeof(float), 64));
  for (int64_t k0 = 0; k0 < j->K; k0 += KC) {
    int64_t kc = j->K - k0 < KC ? j->K - k0 : KC;
    float beta = k0 == 0 ? j->beta : 1.0f;
    int64_t depth = h ? (kc + 1) / 2 : kc; /* rows of a packed panel: k, or pairs of k */
    for (int64_t s = 0; s < slivers; s++) {
      int64_t ns = n0 + s * NR, nr = n1 - ns < NR ? n1 - ns : NR;
      pack_b(j->B, k0, kc, ns, nr, bp + s * NR * depth, VL_COMPUTE_F32);
    }
    for (int64_t m0 = 0; m0 < j->M; m0 += MC) {
      int64_t mc = j->M - m0 < MC ? j->M - m0 : MC;
      if (h) pack_a_pairs(j->A, j->lda, j->transA, m0, mc, k0, kc, MR, (uint32_t *)ap);
      else pack_a(j->A, j->lda, j->transA, m0, mc, k0, kc, MR, ap);
      for (int64_t s = 0; s < slivers; s++) {
        int64_t ns = n0 + s * NR, nr = n1 - ns < NR ? n1 - ns : NR;
        for (int64_t i = 0; i < mc; i += MR) {
          int64_t mr = mc - i < MR ? mc - i : MR;
          micro(depth, ap + i * depth, bp + s * NR * depth, j->C + (m0 + i) * j->ldc + ns, j->ldc, mr, nr, beta);
        }
      }
    }
  }
  free(bp);
  free(ap);
}

/* ---- entry point ------------------------------------------------------------------------------------------- */

void vl_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, int transA, const vl_bmat *B, float *C,
             int64_t ldc, float beta, int compute) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    scale_c(M, N, C, ldc, beta);
    return;
  }
  if (vl_isa() >= VL_ISA_AMX && !transA && M >= AMX_MIN_M && vl_amx_gemm(M, N, K, A, lda, B, C, ldc, beta, compute)) return;

  const vl_kernels *k = kernels(B);
  /* bfloat16 compute on VDPBF16PS where the CPU has it: A packed as bfloat16 pairs (rounded once per panel). */
  if (compute == VL_COMPUTE_BF16 && (transA || M > VL_SMALL_M) && vl_isa() >= VL_ISA_AVX512 && vl_cpu()->avx512_bf16 &&
      vl_kernels_avx512bf16.mr > 0) {
    gemm_job j = {k, M, N, K, A, lda, transA, B, C, ldc, beta, 0, &vl_kernels_avx512bf16};
    j.width = chunk_width(N, vl_kernels_avx512bf16.nr, 4 * vl_kernels_avx512bf16.nr);
    vl_parallel((N + j.width - 1) / j.width, gemm_task, &j);
    return;
  }
  /* bfloat16 compute elsewhere: the activations rounded once, then exact float32 products (B is bfloat16). */
  float *rounded = NULL;
  if (compute == VL_COMPUTE_BF16) {
    rounded = malloc((size_t)M * (size_t)K * sizeof(float));
    for (int64_t m = 0; m < M; m++)
      for (int64_t kk = 0; kk < K; kk++) {
        float v = transA ? A[kk * lda + m] : A[m * lda + kk];
        rounded[m * K + kk] = vl_bf16_to_f32(vl_f32_to_bf16(v));
      }
    A = rounded;
    lda = K;
    transA = 0;
  }

  if (!transA && M <= VL_SMALL_M) {
    small_job j = {k, M, N, K, A, lda, B, C, ldc, beta, 0, 0};
    j.width = chunk_width(N, 16, 64);
    j.q4_bf16 = compute == VL_COMPUTE_BF16 && M == 1 && lda == K && vl_isa() >= VL_ISA_AVX512 && vl_cpu()->avx512_bf16 &&
                vl_kernels_avx512bf16.mr > 0 && vl_q4_decode_bf16_applies(K, B);
    vl_parallel((N + j.width - 1) / j.width, small_task, &j);
  } else {
    gemm_job j = {k, M, N, K, A, lda, transA, B, C, ldc, beta, 0, NULL};
    j.width = chunk_width(N, k->nr, 4 * k->nr);
    vl_parallel((N + j.width - 1) / j.width, gemm_task, &j);
  }
  free(rounded);
}

void vl_bmat_row(const vl_bmat *b, int64_t row, int64_t col, int64_t count, float *dst) {
  int64_t base = row * b->ld + col;
  switch (b->format) {
    case VL_F32:
      memcpy(dst, (const float *)b->data + base, (size_t)count * sizeof(float));
      return;
    case VL_BF16:
    case VL_F16:
      vl_widen_rows(b->format, (const uint16_t *)b->data + base, count, 0, 1, dst);
      return;
    default: {
      /* quantized: through the element rule (storage row `row` is n for trans, k otherwise) */
      for (int64_t j = 0; j < count; j++) dst[j] = b->trans ? vl_bmat_get(b, col + j, row) : vl_bmat_get(b, row, col + j);
    }
  }
}

void vl_widen_rows(int format, const void *data, int64_t cols, int64_t r0, int64_t r1, float *dst) {
  int64_t n = (r1 - r0) * cols, base = r0 * cols;
  const uint16_t *h = (const uint16_t *)data + base;
  switch (format) {
    case VL_BF16:
      for (int64_t i = 0; i < n; i++) dst[i] = vl_bf16_to_f32(h[i]);
      break;
    case VL_F16:
      for (int64_t i = 0; i < n; i++) dst[i] = vl_f16_to_f32(h[i]);
      break;
    default:
      memcpy(dst, (const float *)data + base, (size_t)n * sizeof(float));
  }
}
