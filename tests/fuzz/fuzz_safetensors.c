/*
** fuzz_safetensors.c -- fuzz target: parse arbitrary bytes as a
** safetensors file (header JSON, dtypes, shapes, offsets).
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "petrel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the public reader takes a path: hand it an in-memory file */
    static int fd = -1;
    if (fd < 0) fd = memfd_create("fuzz", 0);
    if (fd < 0 || ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) return 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    petrel_tensor_file_t *f = NULL;
    if (petrel_tensor_file_read(&f, path) == PETREL_OK) {
        for (int i = 0; i < petrel_tensor_file_count(f); i++) {
            petrel_tensor_desc t;
            petrel_tensor_file_get(&t, f, petrel_tensor_file_name(f, i));
        }
        petrel_tensor_file_free(f);
    }
    return 0;
}
