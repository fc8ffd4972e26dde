/*
 * Read bandwidth of main memory as the kernels see it: all pool threads summing disjoint parts of a buffer much
 * larger than the caches. The benchmarks divide a format's weight bytes per token by it (the decode bound). Each
 * thread reads its part as STREAMS interleaved streams with software prefetch ahead, the fastest way of reading
 * memory found here (a single stream a thread measured 10-14 GB/s where this reads 16-20 on the same 2 cores): the
 * bound is what the memory gives, not what one simple loop gets.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "vl.h"

#define STREAMS 8
#define AHEAD 1024 /* bytes prefetched ahead of each stream */

typedef struct {
  const uint64_t *data;
  int64_t words, per_task;
  uint64_t sums[256];
} read_job;

static void read_task(void *ctx, int64_t t) {
  read_job *j = ctx;
  int64_t a = t * j->per_task, b = a + j->per_task < j->words ? a + j->per_task : j->words;
  int64_t per_stream = (b - a) / STREAMS / 8 * 8; /* whole 64-byte lines */
  uint64_t s[8] = {0};
  for (int64_t i = 0; i < per_stream; i += 8) {
    for (int k = 0; k < STREAMS; k++) {
      const uint64_t *line = j->data + a + k * per_stream + i;
      __builtin_prefetch((const char *)line + AHEAD);
      for (int w = 0; w < 8; w++) s[w] ^= line[w];
    }
  }
  for (int64_t i = a + STREAMS * per_stream; i < b; i++) s[0] ^= j->data[i]; /* the rest */
  j->sums[t & 255] ^= s[0] ^ s[1] ^ s[2] ^ s[3] ^ s[4] ^ s[5] ^ s[6] ^ s[7];
}

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Best of `repeats` passes over `bytes`, in bytes per second; 0 when the buffer cannot be allocated. */
double vl_read_bandwidth(int64_t bytes, int repeats) {
  int64_t words = bytes / 8;
  uint64_t *data = aligned_alloc(64, (size_t)((words * 8 + 63) / 64 * 64));
  if (!data) return 0;
  for (int64_t i = 0; i < words; i++) data[i] = (uint64_t)i * 0x9E3779B97F4A7C15ull;
  read_job j;
  memset(&j, 0, sizeof j);
  j.data = data;
  j.words = words;
  int64_t tasks = vl_threads();
  j.per_task = (words + tasks - 1) / tasks;
  double best = 0;
  for (int r = 0; r < repeats; r++) {
    double t0 = seconds();
    vl_parallel(tasks, read_task, &j);
    double rate = (double)words * 8 / (seconds() - t0);
    if (rate > best) best = rate;
  }
  free(data);
  return best;
}
