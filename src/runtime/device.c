/*
** device.c -- the registry of device backends built into this library.
*/
#include "device.h"

#ifdef PETREL_HAVE_CUDA
extern const pt_device_ops pcu_device_ops; /* backends/cuda/rt/device.c */
#endif

extern const pt_device_ops pt_loopback_ops; /* loopback.c */
static bool use_loopback;

void pt_device_use_loopback(void) { use_loopback = true; }

const pt_device_ops *pt_device_get(int dev) {
    if (use_loopback && dev == PT_DEV_CUDA) return &pt_loopback_ops;
#ifdef PETREL_HAVE_CUDA
    if (dev == PT_DEV_CUDA) return &pcu_device_ops;
#endif
    (void)dev;
    return NULL;
}
