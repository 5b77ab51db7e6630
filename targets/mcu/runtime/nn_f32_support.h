/* nn_f32_support.h: what the float32 kernels share. */
#ifndef NN_F32_SUPPORT_H
#define NN_F32_SUPPORT_H

#include "eenn_nn.h"

/* acc + a * b as one fused multiply-add where the FPU has it (VFMA): in ISO C mode (-std=c99) the compiler may
 * not contract a multiply and an add on its own. */
#if defined(__ARM_FEATURE_FMA) && defined(__ARM_FP)
#define MULTIPLY_ADD(acc, a, b) __builtin_fmaf((a), (b), (acc))
#else
#define MULTIPLY_ADD(acc, a, b) ((acc) + (a) * (b))
#endif

static inline float clamp_f32(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

#endif /* NN_F32_SUPPORT_H */
