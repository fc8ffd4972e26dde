/* CPU features, read once: what the processor has and what the OS lets this process use. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "vl.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

static uint64_t xgetbv0(void) {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}

/* Linux keeps AMX tile data disabled until a process asks (arch_prctl ARCH_REQ_XCOMP_PERM, XTILEDATA = 18). */
static int request_amx(void) {
#if defined(__linux__) && defined(SYS_arch_prctl)
  return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
  return 0;
#endif
}

static void detect(vl_features *f) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return;
  int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
  if (!osxsave) return;
  uint64_t xcr0 = xgetbv0();
  int ymm_state = (xcr0 & 0x6) == 0x6;   /* SSE, AVX */
  int zmm_state = (xcr0 & 0xe6) == 0xe6; /* SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM */
  if (__get_cpuid_max(0, 0) < 7) return;
  __cpuid_count(7, 0, a, b, c, d);
  int avx2 = (b >> 5) & 1;
  f->avx2 = ymm_state && avx2 && fma && f16c;
  int f512 = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
  int amx_bf16 = (d >> 22) & 1, amx_tile = (d >> 24) & 1;
  f->avx512 = zmm_state && f512 && dq && bw && vl && fma && f16c;
  __cpuid_count(7, 1, a, b, c, d);
  f->avx512_bf16 = f->avx512 && ((a >> 5) & 1);
  int tile_state = (xcr0 & (3ull << 17)) == (3ull << 17);
  f->amx = f->avx512 && amx_bf16 && amx_tile && tile_state && vl_amx_compiled() && request_amx();
}
#else
static void detect(vl_features *f) { (void)f; }
#endif

static vl_features features;
static int features_read = 0;
static int isa_now = -1;

const vl_features *vl_cpu(void) {
  if (!features_read) {
    memset(&features, 0, sizeof features);
    detect(&features);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    features.cores = n > 0 ? (int)n : 1;
    features_read = 1;
  }
  return &features;
}

int vl_isa_best(void) {
  const vl_features *f = vl_cpu();
  return f->amx ? VL_ISA_AMX : f->avx512 ? VL_ISA_AVX512 : f->avx2 ? VL_ISA_AVX2 : VL_ISA_PORTABLE;
}

int vl_isa(void) {
  if (isa_now < 0) isa_now = vl_isa_best();
  return isa_now;
}

int vl_isa_set(int isa) {
  int best = vl_isa_best();
  isa_now = isa < VL_ISA_PORTABLE ? VL_ISA_PORTABLE : isa > best ? best : isa;
  return isa_now;
}
