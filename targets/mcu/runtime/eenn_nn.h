/* eenn_nn.h: eenn-tvm's neural-network kernels for Cortex-M, int8 and float32.
 *
 * Activations are NHWC with batch 1 (channels last: a kernel tap reads its channels from one run of bytes, the
 * layout CMSIS-NN and TFLite Micro use); a 1-D layer is a 2-D one of height 1. Every kernel takes its parameters
 * in one struct that the code generator emits as `static const` (in flash), its input and output, and, where
 * it needs one, a scratch buffer of `eenn_*_scratch_bytes()` bytes (4-byte aligned) that the memory planner
 * places like any tensor. Nothing allocates; nothing is checked at run time that the generator has checked.
 *
 * int8 arithmetic (docs/int8.md): acc = bias[c] + sum (x - z_in) * w in int32; y = (acc * M + 2^(r-1)) >> r with
 * the scale (M, r) of the output channel; out = clamp(y + z_out, min, max). Padding holds z_in (real 0.0).
 * Build: C99, any optimisation level; on cores with the DSP extension (Cortex-M4, M7, M33, M55) two 16-bit
 * multiply-accumulates per instruction (SMLAD); on Helium (M55) sixteen int8 ones (VMLADAVA) in convolutions and
 * dense layers; plain C elsewhere. */
#ifndef EENN_NN_H
#define EENN_NN_H

#include <stddef.h>
#include <stdint.h>

/* Weights and buffers the kernels read a word at a time (unaligned words cost extra cycles on real cores). */
#if defined(__GNUC__) || defined(__clang__)
#define EENN_ALIGNED(n) __attribute__((aligned(n)))
#else
#define EENN_ALIGNED(n)
#endif

/* A window sliding over an NHWC input: convolutions and pools. Padding at the bottom and right is whatever
 * makes the output size come out; taps outside the input read the padding value. */
typedef struct {
  int32_t input_height, input_width, input_channels;
  int32_t output_height, output_width, output_channels;
  int32_t kernel_height, kernel_width;
  int32_t stride_height, stride_width;
  int32_t dilation_height, dilation_width;
  int32_t pad_top, pad_left;
} eenn_window_t;

/* The real multiplier M * 2^-shift, M in [2^30, 2^31), shift in [1, 62]. */
typedef struct {
  int32_t multiplier, shift;
} eenn_scale_t;

/* out = clamp(y + zero_point, min, max); min/max also carry a fused ReLU or ReLU6. */
typedef struct {
  int32_t zero_point, min, max;
} eenn_output_t;

/* Convolution, depthwise convolution (weights [kh][kw][channels], output_channels == input_channels). */
typedef struct {
  eenn_window_t window;
  int32_t input_zero_point;
  const int8_t *weights;      /* [output_channels][kernel_height][kernel_width][input_channels] */
  const int32_t *bias;        /* [output_channels], or NULL */
  const eenn_scale_t *scales; /* [output_channels] */
  eenn_output_t output;
} eenn_conv_s8_t;

/* A dense layer over `rows` rows: output[r][u] = output(bias[u] + sum_k (x[r][k] - z_in) * weights[u][k]), where
 * x[r][k] is input[r * row_stride + k * feature_stride] (a head's pooling over the positions of an NHWC map reads
 * its rows, the channels, with row_stride 1 and feature_stride = channels). */
typedef struct {
  int32_t input_features, output_features;
  int32_t input_zero_point;
  const int8_t *weights; /* [output_features][input_features] */
  const int32_t *bias;   /* [output_features], or NULL */
  const eenn_scale_t *scales;
  eenn_output_t output;
  int32_t rows, row_stride, feature_stride;
} eenn_dense_s8_t;

/* Average pool: weight * the sum of (x - z_in) over the window (padding adds 0), scaled by
 * s_in * s_w / (window area * s_out). weight is 1, or the one value of a head's pooling matrix (its dense layer with
 * the window's taps at `weight` and zeros elsewhere computes exactly this). */
typedef struct {
  eenn_window_t window;
  int32_t input_zero_point;
  eenn_scale_t scale;
  eenn_output_t output;
  int32_t weight;
} eenn_avg_pool_s8_t;

/* Max pool in the int8 domain (input and output share scale and zero point): clamp(max, min, max). */
typedef struct {
  eenn_window_t window;
  int32_t min, max;
} eenn_max_pool_s8_t;

/* TFLite-style add: a' = ((a - z_a) << 20) scaled by a_scale, likewise b'; out from (a' + b') by output_scale. */
typedef struct {
  int32_t size;
  int32_t a_zero_point, b_zero_point;
  eenn_scale_t a_scale, b_scale, output_scale;
  eenn_output_t output;
} eenn_add_s8_t;

/* A tensor moved to another scale: out = clamp(((x - z_in) scaled) + z_out, min, max). */
typedef struct {
  int32_t size;
  int32_t input_zero_point;
  eenn_scale_t scale;
  eenn_output_t output;
} eenn_rescale_s8_t;

/* Between float32 and int8 (ONNX QuantizeLinear / DequantizeLinear: round half to even, saturate). */
typedef struct {
  int32_t size;
  float scale;
  int32_t zero_point;
} eenn_quantize_t;

size_t eenn_conv_s8_scratch_bytes(const eenn_conv_s8_t *conv);
void eenn_conv_s8(const eenn_conv_s8_t *conv, const int8_t *input, int8_t *output, void *scratch);
size_t eenn_depthwise_s8_scratch_bytes(const eenn_conv_s8_t *conv);
void eenn_depthwise_s8(const eenn_conv_s8_t *conv, const int8_t *input, int8_t *output, void *scratch);
size_t eenn_dense_s8_scratch_bytes(const eenn_dense_s8_t *dense);
void eenn_dense_s8(const eenn_dense_s8_t *dense, const int8_t *input, int8_t *output, void *scratch);
void eenn_avg_pool_s8(const eenn_avg_pool_s8_t *pool, const int8_t *input, int8_t *output);
void eenn_max_pool_s8(const eenn_max_pool_s8_t *pool, const int8_t *input, int8_t *output);
size_t eenn_add_s8_scratch_bytes(const eenn_add_s8_t *add);
void eenn_add_s8(const eenn_add_s8_t *add, const int8_t *a, const int8_t *b, int8_t *output, void *scratch);
void eenn_rescale_s8(const eenn_rescale_s8_t *rescale, const int8_t *input, int8_t *output);
void eenn_quantize_s8(const eenn_quantize_t *quantize, const float *input, int8_t *output);
void eenn_dequantize_s8(const eenn_quantize_t *quantize, const int8_t *input, float *output);

/* float32: the same layouts; min/max clamp the output (-INFINITY/INFINITY for none). */
typedef struct {
  eenn_window_t window;
  const float *weights; /* as eenn_conv_s8_t */
  const float *bias;    /* or NULL */
  float min, max;
} eenn_conv_f32_t;

typedef struct {
  int32_t input_features, output_features;
  const float *weights; /* [output_features][input_features] */
  const float *bias;    /* or NULL */
  float min, max;
} eenn_dense_f32_t;

/* Average pool divides by the taps inside the input (ONNX's default), or with count_padding by the window area;
 * max pool ignores padding. */
typedef struct {
  eenn_window_t window;
  int32_t count_padding;
  float min, max;
} eenn_pool_f32_t;

typedef struct {
  int32_t size;
  float min, max;
} eenn_add_f32_t;

size_t eenn_conv_f32_scratch_bytes(const eenn_conv_f32_t *conv);
void eenn_conv_f32(const eenn_conv_f32_t *conv, const float *input, float *output, void *scratch);
void eenn_depthwise_f32(const eenn_conv_f32_t *conv, const float *input, float *output);
void eenn_dense_f32(const eenn_dense_f32_t *dense, const float *input, float *output);
void eenn_avg_pool_f32(const eenn_pool_f32_t *pool, const float *input, float *output);
void eenn_max_pool_f32(const eenn_pool_f32_t *pool, const float *input, float *output);
void eenn_add_f32(const eenn_add_f32_t *add, const float *a, const float *b, float *output);

#endif /* EENN_NN_H */
