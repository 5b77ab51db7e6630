/* eenn_runtime.c: the bare-metal side of TVM's kernel ABI: argument passing, workspace, errors. */
#include "eenn_runtime.h"

#include <math.h>
#include <string.h>

#include <tvm/ffi/c_api.h>

int32_t eenn_call(eenn_kernel_t kernel, DLTensor *const *tensors, int32_t count) {
  TVMFFIAny args[EENN_MAX_KERNEL_ARGS];
  TVMFFIAny result;
  int32_t i;
  if (count > EENN_MAX_KERNEL_ARGS) return -1;
  memset(args, 0, sizeof(args));
  memset(&result, 0, sizeof(result));
  for (i = 0; i < count; ++i) {
    args[i].type_index = kTVMFFIDLTensorPtr;
    args[i].v_ptr = tensors[i];
  }
  result.type_index = kTVMFFINone;
  return kernel(NULL, args, count, &result);
}

/* Kernels free workspace in the reverse order they allocate it, so a bump pointer suffices. */
static uint8_t *workspace_base;
static size_t workspace_size, workspace_used, workspace_peak;

/* Enough for a Cortex-M; a host build's vector loads need more (-DEENN_WORKSPACE_ALIGNMENT=64u). */
#ifndef EENN_WORKSPACE_ALIGNMENT
#define EENN_WORKSPACE_ALIGNMENT 16u
#endif

void eenn_workspace_reset(uint8_t *buffer, size_t bytes) {
  workspace_base = buffer;
  workspace_size = bytes;
  workspace_used = 0;
  workspace_peak = 0;
}

size_t eenn_workspace_high_water(void) { return workspace_peak; }

void *TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code_hint,
                               int dtype_bits_hint) {
  size_t size = (size_t)((nbytes + EENN_WORKSPACE_ALIGNMENT - 1) / EENN_WORKSPACE_ALIGNMENT * EENN_WORKSPACE_ALIGNMENT);
  void *block;
  (void)device_type;
  (void)device_id;
  (void)dtype_code_hint;
  (void)dtype_bits_hint;
  if (workspace_base == NULL || size > workspace_size - workspace_used) return NULL;
  block = workspace_base + workspace_used;
  workspace_used += size;
  if (workspace_used > workspace_peak) workspace_peak = workspace_used;
  return block;
}

int TVMBackendFreeWorkspace(int device_type, int device_id, void *ptr) {
  (void)device_type;
  (void)device_id;
  if (ptr == NULL || (uint8_t *)ptr < workspace_base || (uint8_t *)ptr > workspace_base + workspace_used) return -1;
  workspace_used = (size_t)((uint8_t *)ptr - workspace_base);
  return 0;
}

/* LLVM-compiled kernels call the workspace through these pointers. */
void *(*__TVMBackendAllocWorkspace)(int, int, uint64_t, int, int) = TVMBackendAllocWorkspace;
int (*__TVMBackendFreeWorkspace)(int, int, void *) = TVMBackendFreeWorkspace;

/* Release kernels carry no assert messages; a failing kernel returns non-zero and the driver reports it. */
void TVMFFIErrorSetRaisedFromCStr(const char *kind, const char *message) {
  (void)kind;
  (void)message;
}

void TVMFFIErrorSetRaisedFromCStrParts(const char *kind, const char **message_parts, int32_t num_parts) {
  (void)kind;
  (void)message_parts;
  (void)num_parts;
}

int32_t eenn_argmax(const float *values, int32_t count) {
  int32_t i, best = 0;
  for (i = 1; i < count; ++i)
    if (values[i] > values[best]) best = i;
  return best;
}

float eenn_max(const float *values, int32_t count) { return values[eenn_argmax(values, count)]; }

float eenn_mean_abs_difference(const float *a, const float *b, int32_t count) {
  float sum = 0.0f;
  int32_t i;
  for (i = 0; i < count; ++i) sum += fabsf(a[i] - b[i]);
  return sum / (float)count;
}

/* int8 stream taps: their int32 channel sums, compared exactly. |a - b| summed stays below 2^31 for taps of
 * fewer than 2^23 elements. */
int32_t eenn_sum_abs_difference_s32(const int32_t *a, const int32_t *b, int32_t count) {
  int32_t sum = 0, i;
  for (i = 0; i < count; ++i) sum += a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];
  return sum;
}

float eenn_max_probability(const float *logits, int32_t count) {
  float top = eenn_max(logits, count), sum = 0.0f;
  int32_t i;
  for (i = 0; i < count; ++i) sum += expf(logits[i] - top);
  return 1.0f / sum;
}
