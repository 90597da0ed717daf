/*
** fuzz_load.c -- fuzz target: load a program from arbitrary bytes, either
** format (.pt2 zip archive or .petrel program file).  Loading covers the
** zip reader, the JSON importer, the graph verifier, the program-file
** reader and the executor's set-up (memory plan, state copies).
*/
#include <stddef.h>
#include <stdint.h>

#include "format/format.h"
#include "petrel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* checksums would stop almost every mutated program file at the door */
    pf_fuzz_skip_checksums = true;
    petrel_program_t *p = NULL;
    petrel_load_opts o = {.verify_weights = true};
    if (petrel_program_load_memory(&p, data, size, &o) == PETREL_OK) petrel_program_free(p);
    return 0;
}
