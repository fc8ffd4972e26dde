#ifndef VL_MAPPING_H
#define VL_MAPPING_H
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
int vl_map_range(const char *path, uint64_t offset, size_t length, void **base, size_t *mapped, void **data, char *error,
                 size_t error_size);
void vl_unmap(void *addr, size_t length);
#endif
