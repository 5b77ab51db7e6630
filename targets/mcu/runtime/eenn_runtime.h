/* eenn_runtime.h: what TVM's compiled kernels need on a bare-metal target, and how the driver calls them.
 *
 * Kernels use TVM's packed calling convention; a driver passes each tensor as a DLTensor pointer through
 * EENN_RUN. Kernels that need scratch memory take it from a LIFO workspace over a static buffer. */
#ifndef EENN_RUNTIME_H
#define EENN_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include <dlpack/dlpack.h>

#include "eenn_nn.h" /* EENN_ALIGNED */

#define EENN_MAX_KERNEL_ARGS 16

typedef int32_t (*eenn_kernel_t)(void *self, void *args, int32_t num_args, void *result);

/* Calls `kernel` on `count` tensors (inputs first, the output last); 0 on success. */
int32_t eenn_call(eenn_kernel_t kernel, DLTensor *const *tensors, int32_t count);

/* A profiling build (-DEENN_PROFILE, board/profile_main.c) counts the instructions of every kernel call. */
#ifdef EENN_PROFILE
void eenn_profile_begin(void);
void eenn_profile_end(void);
#else
#define eenn_profile_begin() ((void)0)
#define eenn_profile_end() ((void)0)
#endif

/* One line per kernel in the generated driver: run it, and leave the caller with `status` on failure. */
#define EENN_TENSORS(...) ((DLTensor *const[]){__VA_ARGS__})
#define EENN_RUN(status, kernel, ...)                                                                    \
  do {                                                                                                  \
    int32_t eenn_failed_;                                                                               \
    eenn_profile_begin();                                                                               \
    eenn_failed_ = eenn_call((eenn_kernel_t)(kernel), EENN_TENSORS(__VA_ARGS__),                        \
                             (int32_t)(sizeof(EENN_TENSORS(__VA_ARGS__)) / sizeof(DLTensor *)));        \
    eenn_profile_end();                                                                                 \
    if (eenn_failed_ != 0) return (status);                                                             \
  } while (0)

/* The scratch memory kernels allocate from; reset before each inference. */
void eenn_workspace_reset(uint8_t *buffer, size_t bytes);
/* The most workspace bytes held at once since the last reset. */
size_t eenn_workspace_high_water(void);

int32_t eenn_argmax(const float *values, int32_t count);
/* The largest softmax probability of `logits`, computed stably. */
float eenn_max_probability(const float *logits, int32_t count);
float eenn_max(const float *values, int32_t count);
/* The mean of |a[i] - b[i]| (a stream's reuse test), summed in order. */
float eenn_mean_abs_difference(const float *a, const float *b, int32_t count);
int32_t eenn_sum_abs_difference_s32(const int32_t *a, const int32_t *b, int32_t count);

#endif /* EENN_RUNTIME_H */
