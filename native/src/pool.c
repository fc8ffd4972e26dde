/*
 * A fixed pool of worker threads. vl_parallel hands out task indices from one atomic counter; the calling
 * thread takes tasks too and returns when every task has finished. Workers sleep on a condition variable
 * between calls, so an idle pool costs nothing.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include "vl.h"

#define MAX_THREADS 256

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;
static pthread_t workers[MAX_THREADS];
static int started = 0;   /* worker threads running */
static int wanted = 0;    /* threads in use, the caller included; 0 = not set yet */
static uint64_t generation = 0;
static int busy = 0;      /* workers still inside the current job */

static vl_task_fn job_fn;
static void *job_ctx;
static int64_t job_tasks;
static atomic_llong next_task;
static int job_workers; /* workers taking part in the current job */

static void run_tasks(void) {
  for (;;) {
    int64_t t = atomic_fetch_add(&next_task, 1);
    if (t >= job_tasks) return;
    job_fn(job_ctx, t);
  }
}

static void *worker_main(void *arg) {
  int index = (int)(intptr_t)arg;
  uint64_t seen = 0;
  pthread_mutex_lock(&lock);
  for (;;) {
    while (generation == seen) pthread_cond_wait(&wake, &lock);
    seen = generation;
    if (index >= job_workers) continue;
    pthread_mutex_unlock(&lock);
    run_tasks();
    pthread_mutex_lock(&lock);
    if (--busy == 0) pthread_cond_signal(&done);
  }
  return NULL;
}

int vl_threads(void) {
  if (wanted == 0) {
    const char *env = getenv("VIDEO_LLAVA_THREADS");
    int n = env ? atoi(env) : 0;
    wanted = n > 0 ? n : vl_cpu()->cores;
    if (wanted > MAX_THREADS) wanted = MAX_THREADS;
  }
  return wanted;
}

void vl_set_threads(int n) {
  if (n < 1) n = 1;
  if (n > MAX_THREADS) n = MAX_THREADS;
  wanted = n;
}

static void ensure_workers(int n) {
  while (started < n) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 20);
    if (pthread_create(&workers[started], &attr, worker_main, (void *)(intptr_t)started) != 0) {
      pthread_attr_destroy(&attr);
      break;
    }
    pthread_attr_destroy(&attr);
    pthread_detach(workers[started]);
    started++;
  }
}

void vl_parallel(int64_t tasks, vl_task_fn fn, void *ctx) {
  int threads = vl_threads();
  int helpers = threads - 1;
  if (helpers > tasks - 1) helpers = (int)(tasks - 1);
  if (helpers <= 0) {
    for (int64_t t = 0; t < tasks; t++) fn(ctx, t);
    return;
  }
  pthread_mutex_lock(&lock);
  ensure_workers(helpers);
  if (helpers > started) helpers = started;
  job_fn = fn;
  job_ctx = ctx;
  job_tasks = tasks;
  atomic_store(&next_task, 0);
  job_workers = helpers;
  busy = helpers;
  generation++;
  pthread_cond_broadcast(&wake);
  pthread_mutex_unlock(&lock);
  run_tasks();
  pthread_mutex_lock(&lock);
  while (busy > 0) pthread_cond_wait(&done, &lock);
  pthread_mutex_unlock(&lock);
}
