/*
 * Fused attention: out = softmax(q·kᵀ·scale + mask)·v per head, in one pass over the keys, threaded over heads.
 *
 * The same operations as src/layers/attention.ts in float32 (products, scale, additive mask, softmax as
 * exp(s − max) / Σ, then the weighted sum of values); only the order of the sums differs. Keys and values may
 * come as consecutive blocks along the key axis (the KV cache), read in place. Per head the keys are laid out
 * once as 16-key panels [d][16], so 16 scores are 16 lanes of one accumulator (no horizontal sums).
 *
 * Masked entries (additive mask ≤ −1e30, as causalMask's float32 minimum) get exactly zero probability in the
 * unfused computation (exp of about −3.4e38 is 0), so a row's scores and weighted sum skip every key outside the
 * span of its unmasked ones — half the work of a causal prompt. A row with no unmasked key is computed in full.
 */
#include <stdlib.h>
#include <string.h>
#include "vl.h"

#define MASKED (-1e30f)
#define ROWS 64   /* query rows per chunk: their scores (ROWS × keys floats) stay in L2 */
#define PV_ROWS 6 /* query rows per pass over the values */

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,fma")
#include <immintrin.h>

typedef struct {
  const vl_attention_args *a;
  int64_t lk;
} job;

/* exp on 16 lanes: n = round(x / ln 2), r = x − n·ln 2 (in two parts), degree-7 Taylor polynomial of e^r (|r| ≤
 * 0.35: truncation below 1e-8 relative), times 2^n by scalef (exact, underflowing to 0 far below). */
static inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-110.0f)); /* e^-110 rounds to 0 in float32; also maps −inf */
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

static inline __mmask16 tail(int64_t n) { return n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1u); }

/* Row `j` of the keys (or values) of head `kv` of batch `b`, across the blocks. */
static const float *kv_row(const vl_attention_args *a, const float *const *blocks, int64_t b, int64_t kv, int64_t j) {
  for (int64_t i = 0; i < a->nblocks; i++) {
    if (j < a->len[i]) return blocks[i] + ((b * a->Hkv + kv) * a->len[i] + j) * a->D;
    j -= a->len[i];
  }
  return NULL;
}

/* Keys [lk][D] → panels kt[lk/16][D][16], zero past lk. */
static void pack_keys(const vl_attention_args *a, int64_t b, int64_t kv, int64_t lk, float *kt) {
  const int64_t D = a->D;
  for (int64_t g = 0; g < (lk + 15) / 16; g++) {
    float *panel = kt + g * D * 16;
    for (int64_t i = 0; i < 16; i++) {
      int64_t j = g * 16 + i;
      const float *row = j < lk ? kv_row(a, a->k, b, kv, j) : NULL;
      for (int64_t d = 0; d < D; d++) panel[d * 16 + i] = row ? row[d] : 0.0f;
    }
  }
}

/*
 * Scores of a few query rows (fewer than 8: decode) read straight from the keys where they lie, a dot product per
 * key: copying every key into panels first cost more than the products (one query row uses each key once).
 */
static void direct_scores(const vl_attention_args *a, int64_t b, int64_t h, int64_t kv, const float *q, int64_t r0,
                          int64_t rows, const int64_t *lo, const int64_t *hi, float *s, int64_t stride) {
  const int64_t D = a->D;
  for (int64_t r = 0; r < rows; r++) {
    const float *qr = q + (r0 + r) * D;
    const float *m = a->mask ? a->mask + b * a->mb + h * a->mh + (r0 + r) * a->mq : NULL;
    float *row = s + r * stride;
    int64_t start = 0; /* first key of block bl */
    for (int64_t bl = 0; bl < a->nblocks && start < hi[r]; start += a->len[bl], bl++) {
      const int64_t from = lo[r] > start ? lo[r] : start, to = hi[r] < start + a->len[bl] ? hi[r] : start + a->len[bl];
      const float *kb = a->k[bl] + (b * a->Hkv + kv) * a->len[bl] * D - start * D;
      for (int64_t j = from; j < to; j++) {
        const float *kr = kb + j * D;
        __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(qr), _mm512_loadu_ps(kr));
        for (int64_t d = 16; d < D; d += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(qr + d), _mm512_loadu_ps(kr + d), acc);
        float v = _mm512_reduce_add_ps(acc) * a->scale;
        row[j] = m ? v + m[j] : v;
      }
    }
  }
}

/* out rows [r, r + n) = their probabilities · the values over keys [j0, j1), 64 columns at a time; n constant. */
static inline __attribute__((always_inline)) void weighted_values(const vl_attention_args *a, int n, const float *const *p,
                                                                  int64_t b, int64_t kv, int64_t j0, int64_t j1,
                                                                  float *out) {
  const int64_t D = a->D;
  for (int64_t c0 = 0; c0 < D; c0 += 64) {
    const int chunks = D - c0 < 64 ? (int)((D - c0) / 16) : 4;
    __m512 acc[PV_ROWS][4];
    for (int i = 0; i < n; i++)
      for (int c = 0; c < 4; c++) acc[i][c] = _mm512_setzero_ps();
    int64_t start = 0; /* first key of block bl */
    for (int64_t bl = 0; bl < a->nblocks && start < j1; start += a->len[bl], bl++) {
      const int64_t from = j0 > start ? j0 : start, to = j1 < start + a->len[bl] ? j1 : start + a->len[bl];
      const float *vb = a->v[bl] + (b * a->Hkv + kv) * a->len[bl] * D - start * D + c0;
      for (int64_t j = from; j < to; j++) {
        const float *vr = vb + j * D;
        for (int c = 0; c < chunks; c++) {
          __m512 vv = _mm512_loadu_ps(vr + c * 16);
          for (int i = 0; i < n; i++) acc[i][c] = _mm512_fmadd_ps(_mm512_set1_ps(p[i][j]), vv, acc[i][c]);
        }
      }
    }
    for (int i = 0; i < n; i++)
      for (int c = 0; c < chunks; c++) _mm512_storeu_ps(out + i * D + c0 + c * 16, acc[i][c]);
  }
}

static void head_task(void *ctx, int64_t task) {
  const job *jb = ctx;
  const vl_attention_args *a = jb->a;
  const int64_t lk = jb->lk, D = a->D, H = a->H, Lq = a->Lq, groups = (lk + 15) / 16;
  const int64_t b = task / H, h = task % H, kv = h / (H / a->Hkv);
  const int direct = Lq < 8;
  float *kt = direct ? NULL : aligned_alloc(64, (size_t)(groups * D * 16) * sizeof(float));
  float *s = aligned_alloc(64, (size_t)(ROWS * groups * 16) * sizeof(float));
  int64_t lo[ROWS], hi[ROWS];
  if (!direct) pack_keys(a, b, kv, lk, kt);
  const float *q = a->q + (b * H + h) * Lq * D;
  float *out = a->out + (b * H + h) * Lq * D;
  const __m512 scale = _mm512_set1_ps(a->scale);

  for (int64_t r0 = 0; r0 < Lq; r0 += ROWS) {
    const int64_t rows = Lq - r0 < ROWS ? Lq - r0 : ROWS;
    /* each row's span of unmasked keys */
    for (int64_t r = 0; r < rows; r++) {
      lo[r] = 0, hi[r] = lk;
      if (!a->mask) continue;
      const float *m = a->mask + b * a->mb + h * a->mh + (r0 + r) * a->mq;
      int64_t first = 0, last = lk;
      while (first < lk && m[first] <= MASKED) first++;
      while (last > first && m[last - 1] <= MASKED) last--;
      if (first < last) lo[r] = first, hi[r] = last;
    }
    if (direct) {
      direct_scores(a, b, h, kv, q, r0, rows, lo, hi, s, groups * 16);
    } else {
      /* scores, 8 rows × 16 keys at a time over the 8 rows' joint span */
      for (int64_t r8 = 0; r8 < rows; r8 += 8) {
        const int64_t n8 = rows - r8 < 8 ? rows - r8 : 8;
        int64_t g0 = lo[r8] / 16, g1 = (hi[r8] + 15) / 16;
        for (int64_t r = 1; r < n8; r++) {
          if (lo[r8 + r] / 16 < g0) g0 = lo[r8 + r] / 16;
          if ((hi[r8 + r] + 15) / 16 > g1) g1 = (hi[r8 + r] + 15) / 16;
        }
        for (int64_t g = g0; g < g1; g++) {
          __m512 acc[8];
          for (int r = 0; r < 8; r++) acc[r] = _mm512_setzero_ps();
          const float *panel = kt + g * D * 16;
          const float *qr = q + (r0 + r8) * D;
          if (n8 == 8) {
            for (int64_t d = 0; d < D; d++) {
              __m512 kd = _mm512_load_ps(panel + d * 16);
              for (int r = 0; r < 8; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(qr[r * D + d]), kd, acc[r]);
            }
          } else {
            for (int64_t d = 0; d < D; d++) {
              __m512 kd = _mm512_load_ps(panel + d * 16);
              for (int r = 0; r < n8; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(qr[r * D + d]), kd, acc[r]);
            }
          }
          for (int r = 0; r < n8; r++) {
            __m512 v = _mm512_mul_ps(acc[r], scale);
            if (a->mask) {
              const float *m = a->mask + b * a->mb + h * a->mh + (r0 + r8 + r) * a->mq + g * 16;
              v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(tail(lk - g * 16), m));
            }
            _mm512_store_ps(s + (r8 + r) * groups * 16 + g * 16, v);
          }
        }
      }
    }
    /* softmax over each row's span; zero elsewhere in its 8-row group's span */
    for (int64_t r = 0; r < rows; r++) {
      float *row = s + r * groups * 16;
      const int64_t l = lo[r], n = hi[r] - lo[r];
      __m512 mx = _mm512_set1_ps(-__builtin_inff());
      for (int64_t j = 0; j < n; j += 16) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(mx, tail(n - j), row + l + j));
      const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
      __m512 sum = _mm512_setzero_ps();
      for (int64_t j = 0; j < n; j += 16) {
        __mmask16 k = tail(n - j);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + l + j), m));
        sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(k, e));
        _mm512_mask_storeu_ps(row + l + j, k, e);
      }
      const __m512 total = _mm512_set1_ps(_mm512_reduce_add_ps(sum));
      for (int64_t j = 0; j < n; j += 16) {
        __mmask16 k = tail(n - j);
        _mm512_mask_storeu_ps(row + l + j, k, _mm512_div_ps(_mm512_maskz_loadu_ps(k, row + l + j), total));
      }
    }
    /* weighted sums of the values, PV_ROWS rows × 64 columns at a time (24 accumulators: each value row read from
     * L2 once per six query rows) over the rows' joint span, each row's probabilities zeroed outside its own span
     * first; the value rows are walked block by block */
    for (int64_t r = 0; r < rows; r += PV_ROWS) {
      const int n = rows - r < PV_ROWS ? (int)(rows - r) : PV_ROWS;
      int64_t j0 = lo[r], j1 = hi[r];
      for (int i = 1; i < n; i++) {
        if (lo[r + i] < j0) j0 = lo[r + i];
        if (hi[r + i] > j1) j1 = hi[r + i];
      }
      const float *p[PV_ROWS];
      for (int i = 0; i < PV_ROWS; i++) {
        float *row = s + (r + (i < n ? i : 0)) * groups * 16;
        p[i] = row;
        if (i >= n) continue;
        for (int64_t j = j0; j < lo[r + i]; j++) row[j] = 0.0f;
        for (int64_t j = hi[r + i]; j < j1; j++) row[j] = 0.0f;
      }
      float *o = out + (r0 + r) * D;
      switch (n) {
        case 1: weighted_values(a, 1, p, b, kv, j0, j1, o); break;
        case 2: weighted_values(a, 2, p, b, kv, j0, j1, o); break;
        case 3: weighted_values(a, 3, p, b, kv, j0, j1, o); break;
        case 4: weighted_values(a, 4, p, b, kv, j0, j1, o); break;
        case 5: weighted_values(a, 5, p, b, kv, j0, j1, o); break;
        default: weighted_values(a, PV_ROWS, p, b, kv, j0, j1, o); break;
      }
    }
  }
  free(kt);
  free(s);
}

int vl_attention(const vl_attention_args *a) {
  if (vl_isa() < VL_ISA_AVX512 || a->D % 16 != 0 || a->D > 128 || a->D <= 0 || a->Hkv <= 0 || a->H % a->Hkv != 0) return 0;
  int64_t lk = 0;
  for (int64_t i = 0; i < a->nblocks; i++) lk += a->len[i];
  if (lk <= 0 || a->Lq <= 0) return 0;
  job j = {a, lk};
  vl_parallel(a->B * a->H, head_task, &j);
  return 1;
}

#pragma GCC pop_options
#else
int vl_attention(const vl_attention_args *a) {
  (void)a;
  return 0;
}
#endif
