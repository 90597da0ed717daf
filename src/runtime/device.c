/*
** device.c -- the registry of device backends built into this library.
*/
#include "device.h"

#ifdef PETREL_HAVE_CUDA
extern const pt_device_ops pcu_device_ops; /* backends/cuda/rt/device.c */
#endif

const pt_device_ops *pt_device_get(int dev) {
#ifdef PETREL_HAVE_CUDA
    if (dev == PT_DEV_CUDA) return &pcu_device_ops;
#endif
    (void)dev;
    return NULL;
}
