/* Read-only views of files: mmap where the platform has it. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdint.h>
#include "mapping.h"

/*
 * Copy-on-write private mapping of bytes [offset, offset + length) of a file: the kernel pages them in on first
 * touch and may drop clean pages under memory pressure (they are re-read from the file), and a stray write changes
 * only this process's copy. The mapping starts at the page holding `offset`; *data points at `offset` itself.
 */
int vl_map_range(const char *path, uint64_t offset, size_t length, void **base, size_t *mapped, void **data, char *error,
                 size_t error_size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(error, error_size, "cannot open %s: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    snprintf(error, error_size, "cannot stat %s: %s", path, strerror(errno));
    close(fd);
    return -1;
  }
  if (offset + length > (uint64_t)st.st_size) {
    snprintf(error, error_size, "%s has %lld bytes; cannot map [%llu, %llu)", path, (long long)st.st_size,
             (unsigned long long)offset, (unsigned long long)(offset + length));
    close(fd);
    return -1;
  }
  uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  uint64_t start = offset / page * page;
  *mapped = (size_t)(offset - start) + length;
  if (length == 0) {
    *base = *data = NULL;
    *mapped = 0;
    close(fd);
    return 0;
  }
  void *p = mmap(NULL, *mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, (off_t)start);
  int saved = errno;
  close(fd);
  if (p == MAP_FAILED) {
    snprintf(error, error_size, "cannot map %zu bytes of %s: %s", *mapped, path, strerror(saved));
    return -1;
  }
  /*
   * Read the range in now (page tables filled read-only, so nothing is copied), as loading a checkpoint is expected
   * to: otherwise the first forward pass would wait on the file, page by page. Kernels before 5.14 lack
   * MADV_POPULATE_READ; they get an asynchronous read-ahead hint instead.
   */
#ifdef MADV_POPULATE_READ
  if (madvise(p, *mapped, MADV_POPULATE_READ) != 0) madvise(p, *mapped, MADV_WILLNEED);
#else
  madvise(p, *mapped, MADV_WILLNEED);
#endif
  *base = p;
  *data = (char *)p + (offset - start);
  return 0;
}

void vl_unmap(void *addr, size_t length) {
  if (addr && length) munmap(addr, length);
}
