/*
 * bitsandbytes' 4-bit quantization of whole blocks (quantize_4bit on CPU), threaded over blocks: per block the
 * largest magnitude (absmax), the float32 reciprocal of it (floored at float32(1e-38)), each value times that
 * reciprocal in float32, clamped to [-1, 1], and its code: the rank among the 15 sorted midpoints of the code
 * table (values strictly below it), through the table's sorted order. Two codes a byte, the even index in the high
 * nibble. The same float32 operations, in the same order, as src/quantization/fourbit.ts, which handles a partial
 * last block and checks the inputs; tests compare the two and bitsandbytes' own bytes.
 */
#include <math.h>
#include "vl.h"

typedef struct {
  const float *x;
  int64_t blocks, block, per_task;
  const float *bounds; /* 15 sorted midpoints */
  const uint8_t *order;
  float *absmax;
  uint8_t *packed;
} q4_job;

static inline int code_of(const float *b, const uint8_t *order, float s) {
  int r = b[7] < s ? 8 : 0;
  if (b[r + 3] < s) r += 4;
  if (b[r + 1] < s) r += 2;
  if (b[r] < s) r += 1;
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
