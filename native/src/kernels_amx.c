/*
 * AMX products with bfloat16 weights in the forward direction (C = A·Wᵀ, W[N][K] as stored).
 *
 * The tiles compute Cᵀ = W·Aᵀ: a 16-row block of W is an A-tile exactly as it lies in memory (16 rows × 32
 * bfloat16 along k), so the weight is never copied or repacked; the activations are packed once per product into
 * the pair-interleaved B-tile layout. TDPBF16PS multiplies bfloat16 pairs exactly and accumulates in float32.
 *
 * Float32 compute uses three planes: a = hi + mid + lo with each term bfloat16 (8 significant bits each cover
 * float32's 24), so hi·w + mid·w + lo·w is a·w exactly and only the float32 accumulation rounds, as in any float32
 * GEMM (inputs below 2^-126 are flushed by the tiles, like DAZ). bfloat16 compute uses the first plane only.
 */
#include "vl.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && (__GNUC__ >= 11)
#pragma GCC push_options
#pragma GCC target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,fma,f16c,avx2")
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include "avx512_util.h"

#define TILE_K 32   /* k per tile step */
/* k-block: a task's weight panel (NW × KC bfloat16, ≤ 256 KiB) stays in L2 and the activations' tiles of one pair
 * of m blocks (32 × KC bfloat16 per plane, 32 KiB for one plane, 48 KiB for three at 256) in L1 */
#define KC(planes) ((planes) == 1 ? 512 : 256)
#define NW 256      /* weight rows per task */

typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} tile_config;

static void configure_tiles(void) {
  tile_config c;
  memset(&c, 0, sizeof c);
  c.palette = 1;
  for (int t = 0; t < 8; t++) {
    c.colsb[t] = 64;
    c.rows[t] = 16;
  }
  _tile_loadconfig(&c);
}

/* Round to nearest even, 16 floats → 16 bfloat16 in the low halves of 32-bit lanes. */
static inline __m512i rne16(__m512 x) {
  __m512i u = _mm512_castps_si512(x);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  return _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
}

static inline __m512 widen_bf16(__m512i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)); }

typedef struct {
  int64_t M, K, Mpad, planes;
  const float *A;
  int64_t lda;
  uint16_t *xp; /* [Mpad/32][K/32][planes][2 m blocks][16 pairs][16 m][2]: a pair of m blocks contiguous along k */
} pack_job;

static inline uint16_t *tile_at(uint16_t *xp, int64_t K, int64_t planes, int64_t kt, int64_t mt, int64_t plane) {
  return xp + ((((mt / 2) * (K / TILE_K) + kt) * planes + plane) * 2 + mt % 2) * 512;
}

/* One 16-row group of A, all of K: planes of bfloat16 pairs, transposed into B-tile order. */
static void pack_task(void *ctx, int64_t mt) {
  pack_job *j = ctx;
  for (int64_t kt = 0; kt < j->K / TILE_K; kt++) {
    __m512 rows[3][16];
    for (int i = 0; i < 16; i++) {
      int64_t m = mt * 16 + i;
      __m512 x0 = _mm512_setzero_ps(), x1 = _mm512_setzero_ps();
      if (m < j->M) {
        x0 = _mm512_loadu_ps(j->A + m * j->lda + kt * TILE_K);
        x1 = _mm512_loadu_ps(j->A + m * j->lda + kt * TILE_K + 16);
      }
      for (int p = 0; p < j->planes; p++) {
        __m512i h0 = rne16(x0), h1 = rne16(x1);
        /* 32 bfloat16 in k order = 16 (k even, k odd) pairs as 32-bit lanes */
        __m512i pairs = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(h0)), _mm512_cvtepi32_epi16(h1), 1);
        rows[p][i] = _mm512_castsi512_ps(pairs);
        x0 = _mm512_sub_ps(x0, widen_bf16(h0));
        x1 = _mm512_sub_ps(x1, widen_bf16(h1));
      }
    }
    for (int p = 0; p < j->planes; p++) {
      transpose16(rows[p]); /* rows[p][pair] = that pair for the 16 rows */
      uint16_t *t = tile_at(j->xp, j->K, j->planes, kt, mt, p);
      for (int q = 0; q < 16; q++) _mm512_store_ps((float *)(t + q * 32), rows[p][q]);
    }
  }
}

typedef struct {
  int64_t M, N, K, Mpad, planes;
  const vl_bmat *B;
  const uint16_t *xp;
  float *C;
  int64_t ldc;
  float beta;
  int codes;             /* int8 weights at float32 compute: products with the codes, then each column scaled */
  const float *colscale; /* [N]: SCB · (1/127), the weight's value per code unit in its row */
} gemm_job;

/*
 * Rows [r0, r0 + 32) (zero past N) × k [k0, k1) of the weight as bfloat16 tiles, each 16 rows × 32 k contiguous:
 * dst[(k − k0)/32][half][16][32]. Tile loads then read 1 KiB in a row instead of 16 rows a weight row apart (a
 * power-of-two stride puts every row of a tile in the same L1 set). bfloat16 is copied; other formats are rounded
 * to bfloat16 (nearest even), the rule for bfloat16 compute and exact for 4-bit values that are bfloat16.
 */
static void weight_panel(const vl_bmat *b, int64_t N, int64_t r0, int64_t k0, int64_t k1, uint16_t *dst, int codes) {
  int vectors = (b->format == VL_F32 || b->format == VL_F16 || quant_vectors(b)) && k0 % 16 == 0;
  for (int64_t r = 0; r < 32; r++) {
    uint16_t *row = dst + (r / 16) * 512 + (r % 16) * 32;
    for (int64_t k = k0; k < k1; k += TILE_K) {
      uint16_t *out = row + (k - k0) / TILE_K * 1024;
      if (r0 + r >= N) {
        memset(out, 0, TILE_K * 2);
      } else if (b->format == VL_BF16) {
        _mm512_store_si512((__m512i *)out, _mm512_loadu_si512((const uint16_t *)b->data + (r0 + r) * b->ld + k));
      } else if (codes) { /* int8 codes: integers of 7 bits, exact in bfloat16 */
        __m512i q = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)((const int8_t *)b->data + (r0 + r) * b->ld + k)));
        __m512i f0 = _mm512_castps_si512(_mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm512_castsi512_si256(q))));
        __m512i f1 = _mm512_castps_si512(_mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(q, 1))));
        _mm256_store_si256((__m256i *)out, _mm512_cvtepi32_epi16(_mm512_srli_epi32(f0, 16)));
        _mm256_store_si256((__m256i *)(out + 16), _mm512_cvtepi32_epi16(_mm512_srli_epi32(f1, 16)));
      } else if (vectors) {
        for (int h = 0; h < 2; h++) {
          int64_t kk = k + 16 * h;
          __m512 v = b->format == VL_F32   ? _mm512_loadu_ps((const float *)b->data + (r0 + r) * b->ld + kk)
                     : b->format == VL_F16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)b->data + (r0 + r) * b->ld + kk)))
                                           : dequant16(b, r0 + r, kk);
          _mm256_store_si256((__m256i *)(out + 16 * h), _mm512_cvtepi32_epi16(rne16(v)));
        }
      } else {
        for (int64_t i = 0; i < TILE_K; i++) out[i] = vl_f32_to_bf16(vl_bmat_get(b, k + i, r0 + r));
      }
    }
  }
}

/* Tile results [n 16][m 16] → C[m][n] with beta. */
static void store_block(const gemm_job *j, const float *acc, int64_t m0, int64_t n0) {
  __m512 r[16];
  for (int i = 0; i < 16; i++) r[i] = _mm512_load_ps(acc + i * 16);
  transpose16(r); /* r[m] = 16 n values */
  int64_t nr = j->N - n0 < 16 ? j->N - n0 : 16;
  __mmask16 mask = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1u);
  for (int i = 0; i < 16 && m0 + i < j->M; i++) {
    float *out = j->C + (m0 + i) * j->ldc + n0;
    __m512 v = r[i];
    if (j->codes) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mask, j->colscale + n0));
    if (j->beta != 0.0f) v = _mm512_fmadd_ps(_mm512_set1_ps(j->beta), _mm512_maskz_loadu_ps(mask, out), v);
    _mm512_mask_storeu_ps(out, mask, v);
  }
}

/*
 * One task: NW rows of the weight against every row of A. Per k-block the task's weight rows are made tiles once
 * (an L2-sized panel) and reused for every 32 rows of A, whose tiles for the block sit contiguous (L1-sized); the
 * four accumulators of a 32 × 32 block of C live in tiles through the block.
 */
static void gemm_task(void *ctx, int64_t task) {
  const gemm_job *j = ctx;
  int64_t n0 = task * NW, n1 = n0 + NW < j->N ? n0 + NW : j->N;
  int64_t subs = (n1 - n0 + 31) / 32, pairs = j->Mpad / 32, kts = j->K / TILE_K;
  const int64_t kc = KC(j->planes);
  uint16_t *panels = aligned_alloc(64, (size_t)subs * 32 * kc * 2);
  float *acc = aligned_alloc(64, (size_t)pairs * subs * 4 * 256 * sizeof(float));
  configure_tiles();
  for (int64_t k0 = 0; k0 < j->K; k0 += kc) {
    int64_t k1 = k0 + kc < j->K ? k0 + kc : j->K, steps = (k1 - k0) / TILE_K;
    for (int64_t s = 0; s < subs; s++) weight_panel(j->B, n1, n0 + s * 32, k0, k1, panels + s * 32 * kc, j->codes);
    for (int64_t mp = 0; mp < pairs; mp++) {
      const uint16_t *x = j->xp + (mp * kts + k0 / TILE_K) * j->planes * 1024;
      for (int64_t s = 0; s < subs; s++) {
        float *a = acc + (mp * subs + s) * 4 * 256;
        const uint16_t *w = panels + s * 32 * kc;
        if (k0 == 0) {
          _tile_zero(0);
          _tile_zero(1);
          _tile_zero(2);
          _tile_zero(3);
        } else {
          _tile_loadd(0, a, 64);
          _tile_loadd(1, a + 256, 64);
          _tile_loadd(2, a + 512, 64);
          _tile_loadd(3, a + 768, 64);
        }
        for (int64_t t = 0; t < steps; t++) {
          _tile_loadd(4, w + t * 1024, 64);
          _tile_loadd(5, w + t * 1024 + 512, 64);
          for (int64_t p = 0; p < j->planes; p++) {
            const uint16_t *xt = x + (t * j->planes + p) * 1024;
            _tile_loadd(6, xt, 64);
            _tile_loadd(7, xt + 512, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
          }
        }
        _tile_stored(0, a, 64);
        _tile_stored(1, a + 256, 64);
        _tile_stored(2, a + 512, 64);
        _tile_stored(3, a + 768, 64);
      }
    }
  }
  _tile_release();
  /* tile (n block b, m block c) sits at index 2b + c */
  for (int64_t mp = 0; mp < pairs; mp++)
    for (int64_t s = 0; s < subs; s++) {
      float *a = acc + (mp * subs + s) * 4 * 256;
      for (int b = 0; b < 2; b++)
        for (int c = 0; c < 2; c++) {
          int64_t nb = n0 + s * 32 + b * 16;
          if (nb < n1) store_block(j, a + (2 * b + c) * 256, mp * 32 + c * 16, nb);
        }
    }
  free(acc);
  free(panels);
}

int vl_amx_compiled(void) { return 1; }

/*
 * Where the tiles give the product's numbers: bfloat16 weights (float32 compute through three planes); any weight
 * with bfloat16 compute (the weight rounded to bfloat16 as torch's .to(bfloat16) would); 4-bit weights whose values
 * are rounded to bfloat16 by their format (exactly bfloat16, so float32 compute stays exact); int8 weights at float32
 * compute, whose codes are exact in bfloat16: exact products with the codes, then each output column times its
 * row's SCB/127 once (instead of every weight rounded to code·SCB/127 before its product: ~1e-7 relative apart).
 */
static int amx_applies(const vl_bmat *B, int compute) {
  if (!B->trans) return 0;
  if (B->format == VL_BF16 || B->format == VL_I8 || compute == VL_COMPUTE_BF16) return 1;
  return B->format == VL_Q4 && B->round == VL_BF16;
}

int vl_amx_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const vl_bmat *B, float *C, int64_t ldc,
                float beta, int compute) {
  if (!amx_applies(B, compute) || K % TILE_K != 0) return 0;
  int64_t planes = compute == VL_COMPUTE_BF16 ? 1 : 3;
  int64_t Mpad = (M + 31) / 32 * 32;
  uint16_t *xp = aligned_alloc(64, (size_t)Mpad * K * planes * 2);
  if (!xp) return 0;
  pack_job pj = {M, K, Mpad, planes, A, lda, xp};
  vl_parallel(Mpad / 16, pack_task, &pj);
  gemm_job gj = {M, N, K, Mpad, planes, B, xp, C, ldc, beta, B->format == VL_I8 && planes == 3, NULL};
  float *colscale = NULL;
  if (gj.codes) {
    colscale = malloc((size_t)(N + 16) * sizeof(float));
    for (int64_t n = 0; n < N; n++) colscale[n] = B->scales[n] * VL_INV_127;
    gj.colscale = colscale;
  }
  vl_parallel((N + NW - 1) / NW, gemm_task, &gj);
  free(colscale);
  free(xp);
  return 1;
}

#pragma GCC pop_options
#else
int vl_amx_compiled(void) { return 0; }
int vl_amx_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const vl_bmat *B, float *C, int64_t ldc,
                float beta, int compute) {
  (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B, (void)C, (void)ldc, (void)beta, (void)compute;
  return 0;
}
#endif
