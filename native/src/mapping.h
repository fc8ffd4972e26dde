#ifndef VL_MAPPING_H
#define VL_MAPPING_H
#include <stddef.h>
#include <stdio.h>
int vl_map_file(const char *path, void **addr, size_t *length, char *error, size_t error_size);
void vl_unmap(void *addr, size_t length);
#endif
