/*
 * oneDNN's sgemm, found at run time (dlopen of libdnnl.so.2, e.g. Debian's libdnnl-dev) rather than linked: only the
 * benchmarks call it, to choose the GEMM under the kernels by measurement (benchmarks/gemm.ts). Absent, it reports so.
 */
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include "vl.h"

typedef int (*dnnl_sgemm_fn)(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                             int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

static dnnl_sgemm_fn sgemm = NULL;
static int tried = 0;

int vl_dnnl_available(void) {
  if (!tried) {
    tried = 1;
    void *lib = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen("libdnnl.so", RTLD_NOW | RTLD_LOCAL);
    if (lib) sgemm = (dnnl_sgemm_fn)dlsym(lib, "dnnl_sgemm");
  }
  return sgemm != NULL;
}

/* Row-major C = op(A)·op(B) + beta·C; 0 on success. */
int vl_dnnl_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float beta, float *C, int64_t ldc) {
  if (!vl_dnnl_available()) return -1;
  return sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}
