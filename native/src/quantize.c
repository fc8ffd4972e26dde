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
} q4_job;

/* The rank of s among the sorted midpoints (how many lie strictly below it), by halving without branches: the
 * weights are noise, so a branch per step would be mispredicted half the time. */
static inline int code_of(const float *b, const uint8_t *order, float s) {
  int r = (b[7] < s) << 3;
  r += (b[r + 3] < s) << 2;
  r += (b[r + 1] < s) << 1;
  r += b[r] < s;
  return order[r];
}

static void q4_task(void *ctx, int64_t task) {
  const q4_job *j = ctx;
  const float tiny = 1e-38f;
  int64_t b1 = (task + 1) * j->per_task < j->blocks ? (task + 1) * j->per_task : j->blocks;
  for (int64_t b = task * j->per_task; b < b1; b++) {
    const float *x = j->x + b * j->block;
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

void vl_quantize4bit(const float *x, int64_t blocks, int64_t block, const float *bounds, const uint8_t *order, float *absmax,
                     uint8_t *packed) {
  int64_t per_task = 256;
  q4_job j = {x, blocks, block, per_task, bounds, order, absmax, packed};
  vl_parallel((blocks + per_task - 1) / per_task, q4_task, &j);
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
  int64_t rows, cols;
  int8_t *codes;
  float *scb;
  int64_t overflow; /* smallest flat index that overflows float16, or -1 */
  pthread_mutex_t lock;
} i8_job;

static void i8_task(void *ctx, int64_t r) {
  i8_job *j = ctx;
  const float *x = j->x + r * j->cols;
  int8_t *out = j->codes + r * j->cols;
  float m = 0.0f;
  for (int64_t c = 0; c < j->cols; c++) {
    float h = fabsf(round_to_f16(x[c]));
    if (isinf(h)) {
      pthread_mutex_lock(&j->lock);
      if (j->overflow < 0 || r * j->cols + c < j->overflow) j->overflow = r * j->cols + c;
      pthread_mutex_unlock(&j->lock);
      return;
    }
    if (h > m) m = h;
  }
  j->scb[r] = m;
  if (m == 0.0f) {
    memset(out, 0, (size_t)j->cols);
    return;
  }
  float scale = (float)(1.0 / (double)m) * 127.0f;
  for (int64_t c = 0; c < j->cols; c++) out[c] = (int8_t)nearbyintf(round_to_f16(x[c]) * scale);
}

int64_t vl_quantize_int8(const float *x, int64_t rows, int64_t cols, int8_t *codes, float *scb) {
  i8_job j = {x, rows, cols, codes, scb, -1};
  pthread_mutex_init(&j.lock, NULL);
  vl_parallel(rows, i8_task, &j);
  pthread_mutex_destroy(&j.lock);
  return j.overflow;
}
