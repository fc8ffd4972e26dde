/*
 * bitsandbytes' 4-bit quantization of whole blocks (quantize_4bit on CPU), threaded over blocks: per block the
 * largest magnitude (absmax), the float32 reciprocal of it (floored at float32(1e-38)), each value times that
 * reciprocal in float32, clamped to [-1, 1], and its code: the rank among the 15 sorted midpoints of the code
 * table (values strictly below it), through the table's sorted order. Two codes a byte, the even index in the high
 * nibble. The same float32 operations, in the same order, as src/quantization/fourbit.ts, which handles a partial
 * last block and checks the inputs; tests compare the two and bitsandbytes' own bytes.
 */
#include <math.h>
#include <pthread.h>
#include <string.h>
#include "vl.h"

typedef struct {
  const float *x;
  int64_t blocks, block, per_task;
  const float *bounds; /* 15 sorted midpoints */
  const uint8_t *order;
  float *absmax;
  uint8_t *packed;
  const uint16_t *bf16; /* set: the values are these bfloat16 ones (x unused), widened a block at a time */
  int64_t bad;          /* bf16: the smallest index of a value that is not finite, or -1 */
  pthread_mutex_t lock;
} q4_job;

#define MAX_BLOCK 4096 /* bitsandbytes' largest 4-bit block */

/* slot = min(slot, index) under the job's lock (-1: none yet). */
static void record_first(pthread_mutex_t *lock, int64_t *slot, int64_t index) {
  pthread_mutex_lock(lock);
  if (*slot < 0 || index < *slot) *slot = index;
  pthread_mutex_unlock(lock);
}

static inline float bf16_value(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float v;
  memcpy(&v, &u, 4);
  return v;
}

/* Block b's values as float32: in place, or (bfloat16 source) widened into buf; NULL where one is not finite (its
 * index recorded; the caller refuses the weight, so the block's codes do not matter). */
static const float *block_values(q4_job *j, int64_t b, float *buf) {
  if (!j->bf16) return j->x + b * j->block;
  const uint16_t *h = j->bf16 + b * j->block;
  for (int64_t i = 0; i < j->block; i++) {
    buf[i] = bf16_value(h[i]);
    if (!isfinite(buf[i])) {
      record_first(&j->lock, &j->bad, b * j->block + i);
      return NULL;
    }
  }
  return buf;
}

/* The rank of s among the sorted midpoints (how many lie strictly below it), by halving without branches: the
 * weights are noise, so a branch per step would be mispredicted half the time. */
static inline int code_of(const float *b, const uint8_t *order, float s) {
  int r = (b[7] < s) << 3;
  r += (b[r + 3] < s) << 2;
  r += (b[r + 1] < s) << 1;
  r += b[r] < s;
  return order[r];
}

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq")
#include <immintrin.h>
/*
 * The same codes 16 values at a time (blocks of a multiple of 16): the halving of code_of with the bounds looked up
 * per lane (vpermps), the rank mapped through `order` (vpermd), and the codes of value pairs (2i, 2i + 1) packed
 * into bytes from the low byte of each 64-bit lane. Absmax by vector max (exact in any order).
 */
static int q4_blocks_avx512(q4_job *j, int64_t b0, int64_t b1, float *buf) {
  if (j->block % 16 != 0) return 0;
  float padded[16];
  memcpy(padded, j->bounds, 15 * sizeof(float));
  padded[15] = padded[14];
  int32_t order32[16];
  for (int i = 0; i < 16; i++) order32[i] = j->order[i];
  const __m512 bounds = _mm512_loadu_ps(padded), one = _mm512_set1_ps(1.0f), minus_one = _mm512_set1_ps(-1.0f);
  const __m512i order = _mm512_loadu_si512(order32);
  const __m512i c1 = _mm512_set1_epi32(1), c2 = _mm512_set1_epi32(2), c3 = _mm512_set1_epi32(3),
                c4 = _mm512_set1_epi32(4), c8 = _mm512_set1_epi32(8);
  const float tiny = 1e-38f;
  for (int64_t b = b0; b < b1; b++) {
    const float *x = block_values(j, b, buf);
    if (!x) continue;
    __m512 m = _mm512_setzero_ps();
    for (int64_t i = 0; i < j->block; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    const float mx = _mm512_reduce_max_ps(m);
    j->absmax[b] = mx;
    const __m512 scale = _mm512_set1_ps((float)(1.0 / (double)(mx > tiny ? mx : tiny)));
    uint8_t *out = j->packed + b * j->block / 2;
    for (int64_t i = 0; i < j->block; i += 16) {
      __m512 s = _mm512_mul_ps(_mm512_loadu_ps(x + i), scale);
      s = _mm512_min_ps(_mm512_max_ps(s, minus_one), one); /* the inputs are finite (checked by the caller) */
      /* r = 8·[b7 < s]; r += 4·[b(r+3) < s]; r += 2·[b(r+1) < s]; r += [b(r) < s] */
      __m512i r = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(_mm512_permutexvar_ps(_mm512_set1_epi32(7), bounds), s, _CMP_LT_OQ), c8);
      r = _mm512_mask_add_epi32(r, _mm512_cmp_ps_mask(_mm512_permutexvar_ps(_mm512_add_epi32(r, c3), bounds), s, _CMP_LT_OQ), r, c4);
      r = _mm512_mask_add_epi32(r, _mm512_cmp_ps_mask(_mm512_permutexvar_ps(_mm512_add_epi32(r, c1), bounds), s, _CMP_LT_OQ), r, c2);
      r = _mm512_mask_add_epi32(r, _mm512_cmp_ps_mask(_mm512_permutexvar_ps(r, bounds), s, _CMP_LT_OQ), r, c1);
      __m512i code = _mm512_permutexvar_epi32(r, order);
      /* lane 2i: code(2i) << 4 | code(2i + 1), then the low byte of each 64-bit lane */
      __m512i pair = _mm512_or_si512(_mm512_slli_epi64(code, 4), _mm512_srli_epi64(code, 32));
      _mm_storel_epi64((__m128i *)(out + i / 2), _mm512_cvtepi64_epi8(pair));
    }
  }
  return 1;
}
#pragma GCC pop_options
#else
static int q4_blocks_avx512(q4_job *j, int64_t b0, int64_t b1, float *buf) {
  (void)j, (void)b0, (void)b1, (void)buf;
  return 0;
}
#endif

static void q4_task(void *ctx, int64_t task) {
  q4_job *j = ctx;
  float buf[MAX_BLOCK];
  const float tiny = 1e-38f;
  int64_t b1 = (task + 1) * j->per_task < j->blocks ? (task + 1) * j->per_task : j->blocks;
  if (vl_isa() >= VL_ISA_AVX512 && q4_blocks_avx512(j, task * j->per_task, b1, buf)) return;
  for (int64_t b = task * j->per_task; b < b1; b++) {
    const float *x = block_values(j, b, buf);
    if (!x) continue;
    float m = 0.0f;
    for (int64_t i = 0; i < j->block; i++) {
      float a = fabsf(x[i]);
      if (a > m) m = a;
    }
    j->absmax[b] = m;
    float scale = (float)(1.0 / (double)(m > tiny ? m : tiny));
    uint8_t *out = j->packed + b * j->block / 2;
    for (int64_t i = 0; i < j->block; i += 2) {
      float s0 = x[i] * scale, s1 = x[i + 1] * scale;
      s0 = s0 < -1.0f ? -1.0f : s0 > 1.0f ? 1.0f : s0;
      s1 = s1 < -1.0f ? -1.0f : s1 > 1.0f ? 1.0f : s1;
      out[i / 2] = (uint8_t)(code_of(j->bounds, j->order, s0) << 4 | code_of(j->bounds, j->order, s1));
    }
  }
}

int64_t vl_quantize4bit(const float *x, const uint16_t *bf16, int64_t blocks, int64_t block, const float *bounds,
                        const uint8_t *order, float *absmax, uint8_t *packed) {
  if (block > MAX_BLOCK) return -2;
  int64_t per_task = 256;
  q4_job j = {x, blocks, block, per_task, bounds, order, absmax, packed, bf16, -1};
  pthread_mutex_init(&j.lock, NULL);
  vl_parallel((blocks + per_task - 1) / per_task, q4_task, &j);
  pthread_mutex_destroy(&j.lock);
  return j.bad;
}

/*
 * bitsandbytes' 8-bit quantization of rows (Int8Params on CPU): each value rounded to float16 (nearest even;
 * 65520 and beyond overflow), the row's largest magnitude (SCB), then round(v · float32(float32(1 / SCB) · 127))
 * with float32 products and ties to even; a row of zeros keeps codes 0. The same operations as
 * src/quantization/int8.ts, which checks the inputs; tests compare the two.
 */
static inline float round_to_f16(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  uint32_t sign = u & 0x80000000u, a = u & 0x7fffffffu;
  float r;
  if (a >= 0x477ff000u) { /* 65520 (the tie above 65504 rounds up) and beyond: infinity */
    u = sign | 0x7f800000u;
    memcpy(&r, &u, 4);
    return r;
  }
  if (a < 0x38800000u) return nearbyintf(x * 16777216.0f) * (1.0f / 16777216.0f); /* below 2^-14: steps of 2^-24 */
  a = (a + 0xfffu + ((a >> 13) & 1u)) & ~0x1fffu;                                 /* 10 mantissa bits, ties to even */
  u = sign | a;
  memcpy(&r, &u, 4);
  return r;
}

typedef struct {
  const float *x;
  const uint16_t *bf16; /* set: the values are these bfloat16 ones (x unused), widened as they are read */
  int64_t rows, cols;
  int8_t *codes;
  float *scb;
  int64_t non_finite; /* smallest flat index of a value that is not finite, or -1 */
  int64_t overflow;   /* smallest flat index that overflows float16, or -1 */
  pthread_mutex_t lock;
} i8_job;

static inline float i8_value(const i8_job *j, int64_t i) { return j->bf16 ? bf16_value(j->bf16[i]) : j->x[i]; }

static void i8_task(void *ctx, int64_t r) {
  i8_job *j = ctx;
  const int64_t base = r * j->cols;
  int8_t *out = j->codes + base;
  float m = 0.0f;
  int overflowed = 0; /* the row is still read to its end: a value that is not finite is reported before an overflow */
  for (int64_t c = 0; c < j->cols; c++) {
    float v = i8_value(j, base + c);
    if (!isfinite(v)) {
      record_first(&j->lock, &j->non_finite, base + c);
      return;
    }
    float h = fabsf(round_to_f16(v));
    if (isinf(h) && !overflowed) {
      record_first(&j->lock, &j->overflow, base + c);
      overflowed = 1;
    }
    if (h > m) m = h;
  }
  if (overflowed) return;
  j->scb[r] = m;
  if (m == 0.0f) {
    memset(out, 0, (size_t)j->cols);
    return;
  }
  float scale = (float)(1.0 / (double)m) * 127.0f;
  for (int64_t c = 0; c < j->cols; c++) out[c] = (int8_t)nearbyintf(round_to_f16(i8_value(j, base + c)) * scale);
}

void vl_quantize_int8(const float *x, const uint16_t *bf16, int64_t rows, int64_t cols, int8_t *codes, float *scb,
                      int64_t *non_finite, int64_t *overflow) {
  i8_job j = {x, bf16, rows, cols, codes, scb, -1, -1};
  pthread_mutex_init(&j.lock, NULL);
  vl_parallel(rows, i8_task, &j);
  pthread_mutex_destroy(&j.lock);
  *non_finite = j.non_finite;
  *overflow = j.overflow;
}

/* The first index of x[0, n) that is not finite or (bf16) not a bfloat16 value (low 16 bits set), or -1. Chunks are
 * scanned with an OR of flags (vectorised) and only a flagged chunk element by element. */
int64_t vl_first_unrepresentable(const float *x, int64_t n, int bf16) {
  const uint32_t *u = (const uint32_t *)x;
  const uint32_t low = bf16 ? 0xffffu : 0u;
  for (int64_t c0 = 0; c0 < n; c0 += 4096) {
    int64_t c1 = c0 + 4096 < n ? c0 + 4096 : n;
    uint32_t bad = 0;
    for (int64_t i = c0; i < c1; i++) bad |= ((u[i] & 0x7f800000u) == 0x7f800000u) | ((u[i] & low) != 0);
    if (!bad) continue;
    for (int64_t i = c0; i < c1; i++)
      if ((u[i] & 0x7f800000u) == 0x7f800000u || (u[i] & low) != 0) return i;
  }
  return -1;
}
