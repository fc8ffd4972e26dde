/* Read-only views of files: mmap where the platform has it. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "mapping.h"

/*
 * Copy-on-write private mapping: the kernel pages the file in on first touch and may drop clean pages under
 * memory pressure (they are re-read from the file), and a stray write changes only this process's copy.
 */
int vl_map_file(const char *path, void **addr, size_t *length, char *error, size_t error_size) {
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
  *length = (size_t)st.st_size;
  if (*length == 0) {
    *addr = NULL;
    close(fd);
    return 0;
  }
  void *p = mmap(NULL, *length, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  int saved = errno;
  close(fd);
  if (p == MAP_FAILED) {
    snprintf(error, error_size, "cannot map %s (%zu bytes): %s", path, *length, strerror(saved));
    return -1;
  }
  madvise(p, *length, MADV_WILLNEED);
  *addr = p;
  return 0;
}

void vl_unmap(void *addr, size_t length) {
  if (addr && length) munmap(addr, length);
}
