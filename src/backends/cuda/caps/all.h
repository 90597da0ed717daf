/* caps/all.h -- every CUDA family's capability lines (X-macro PCU_CAP). */
#include "elementwise.h"
#include "data.h"
#include "dense.h"
#include "quant.h"
