/*
** mapfile.c -- read-only file mappings, so weights are used where the
** kernel's page cache holds them and a load touches only what it reads.
*/
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

petrel_status pt_map_file(pt_mapping *m, const char *path, pt_err *err) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pt_fail(err, PETREL_ERR_IO, "cannot open '%s': %m", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return pt_fail(err, PETREL_ERR_IO, "'%s' is not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return pt_fail(err, PETREL_ERR_FORMAT, "'%s' is empty", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd); /* the mapping keeps the file alive */
    if (p == MAP_FAILED) return pt_fail(err, PETREL_ERR_IO, "cannot map '%s': %m", path);
    m->data = p;
    m->size = (uint64_t)st.st_size;
    return PETREL_OK;
}

void pt_unmap_file(pt_mapping *m) {
    if (m && m->data) munmap((void *)m->data, (size_t)m->size);
    if (m) {
        m->data = NULL;
        m->size = 0;
    }
}
