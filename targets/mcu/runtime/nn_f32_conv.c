/* nn_f32_conv.c: float32 convolution as im2col + matmul, and dense layers.
 *
 * The matmul computes 4 output channels x 4 output pixels per inner loop: 16 accumulators, 4 weights and 4 inputs
 * in the 32 single-precision registers of a Cortex-M FPU, so each loaded value feeds four multiply-adds. */
#include <string.h>

#include "nn_f32_support.h"

#define TILE 4 /* output channels and output pixels per inner loop */

/* Four rows of weights dotted with one column (dense layers, and a last pixel): acc[i] += w_i . x. */
static void dot_4x1(float acc[TILE], const float *w0, const float *w1, const float *w2, const float *w3,
                    const float *x, int32_t depth) {
  float a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  int32_t k;
  for (k = 0; k < depth; ++k) {
    const float v = x[k];
    a0 = MULTIPLY_ADD(a0, w0[k], v);
    a1 = MULTIPLY_ADD(a1, w1[k], v);
    a2 = MULTIPLY_ADD(a2, w2[k], v);
    a3 = MULTIPLY_ADD(a3, w3[k], v);
  }
  acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}

/* outputs[j][row] = clamp(bias[row] + weights[row] . columns[j]) for rows and `count` (1..4) columns. Partial
 * tiles repeat their last row or column and leave the copies unstored. */
static void matmul_f32(const float *weights, const float *bias, float lo, float hi, int32_t rows, int32_t depth,
                       const float *const *columns, int32_t count, float *const *outputs) {
  const float *x0 = columns[0], *x1 = columns[count > 1 ? 1 : 0];
  const float *x2 = columns[count > 2 ? 2 : 0], *x3 = columns[count > 3 ? 3 : 0];
  int32_t row, k, i, j;
  for (row = 0; row < rows; row += TILE) {
    const int32_t valid = rows - row < TILE ? rows - row : TILE;
    const float *w0 = weights + row * depth, *w1 = valid > 1 ? w0 + depth : w0;
    const float *w2 = valid > 2 ? w0 + 2 * depth : w0, *w3 = valid > 3 ? w0 + 3 * depth : w0;
    float acc[TILE][TILE];
    for (i = 0; i < TILE; ++i)
      for (j = 0; j < TILE; ++j) acc[i][j] = bias != NULL ? bias[row + (i < valid ? i : 0)] : 0.0f;
    if (count == 1) {
      float column[TILE];
      for (i = 0; i < TILE; ++i) column[i] = acc[i][0];
      dot_4x1(column, w0, w1, w2, w3, x0, depth);
      for (i = 0; i < TILE; ++i) acc[i][0] = column[i];
    } else {
      float a00 = acc[0][0], a01 = acc[0][1], a02 = acc[0][2], a03 = acc[0][3];
      float a10 = acc[1][0], a11 = acc[1][1], a12 = acc[1][2], a13 = acc[1][3];
      float a20 = acc[2][0], a21 = acc[2][1], a22 = acc[2][2], a23 = acc[2][3];
      float a30 = acc[3][0], a31 = acc[3][1], a32 = acc[3][2], a33 = acc[3][3];
      for (k = 0; k < depth; ++k) {
        const float v0 = w0[k], v1 = w1[k], v2 = w2[k], v3 = w3[k];
        const float c0 = x0[k], c1 = x1[k], c2 = x2[k], c3 = x3[k];
        a00 = MULTIPLY_ADD(a00, v0, c0), a01 = MULTIPLY_ADD(a01, v0, c1);
        a02 = MULTIPLY_ADD(a02, v0, c2), a03 = MULTIPLY_ADD(a03, v0, c3);
        a10 = MULTIPLY_ADD(a10, v1, c0), a11 = MULTIPLY_ADD(a11, v1, c1);
        a12 = MULTIPLY_ADD(a12, v1, c2), a13 = MULTIPLY_ADD(a13, v1, c3);
        a20 = MULTIPLY_ADD(a20, v2, c0), a21 = MULTIPLY_ADD(a21, v2, c1);
        a22 = MULTIPLY_ADD(a22, v2, c2), a23 = MULTIPLY_ADD(a23, v2, c3);
        a30 = MULTIPLY_ADD(a30, v3, c0), a31 = MULTIPLY_ADD(a31, v3, c1);
        a32 = MULTIPLY_ADD(a32, v3, c2), a33 = MULTIPLY_ADD(a33, v3, c3);
      }
      acc[0][0] = a00, acc[0][1] = a01, acc[0][2] = a02, acc[0][3] = a03;
      acc[1][0] = a10, acc[1][1] = a11, acc[1][2] = a12, acc[1][3] = a13;
      acc[2][0] = a20, acc[2][1] = a21, acc[2][2] = a22, acc[2][3] = a23;
      acc[3][0] = a30, acc[3][1] = a31, acc[3][2] = a32, acc[3][3] = a33;
    }
    for (i = 0; i < valid; ++i)
      for (j = 0; j < count; ++j) outputs[j][row + i] = clamp_f32(acc[i][j], lo, hi);
  }
}

/* A 1x1 convolution without padding reads its columns in place: a pixel's channels are contiguous. */
static int reads_in_place(const eenn_window_t *w) {
  return w->kernel_height == 1 && w->kernel_width == 1 && w->pad_top == 0 && w->pad_left == 0 &&
         (w->output_height - 1) * w->stride_height < w->input_height &&
         (w->output_width - 1) * w->stride_width < w->input_width;
}

size_t eenn_conv_f32_scratch_bytes(const eenn_conv_f32_t *conv) {
  const eenn_window_t *w = &conv->window;
  if (reads_in_place(w)) return 0;
  return (size_t)TILE * (size_t)(w->kernel_height * w->kernel_width * w->input_channels) * sizeof(float);
}

/* The window of output pixel p as a column: each kernel row one copy when it lies inside (and is undilated),
 * padding as zeros; the test for padding is per tap, never per value. */
static void fill_column(const eenn_window_t *w, const float *input, int32_t p, float *column) {
  const int32_t channels = w->input_channels, oy = p / w->output_width, ox = p % w->output_width;
  const int32_t y0 = oy * w->stride_height - w->pad_top, x0 = ox * w->stride_width - w->pad_left;
  const int32_t x_last = x0 + (w->kernel_width - 1) * w->dilation_width;
  int32_t ky, kx;
  for (ky = 0; ky < w->kernel_height; ++ky) {
    const int32_t iy = y0 + ky * w->dilation_height;
    const float *row = input + (intptr_t)iy * w->input_width * channels;
    if (iy < 0 || iy >= w->input_height) {
      memset(column, 0, (size_t)(w->kernel_width * channels) * sizeof(float));
      column += w->kernel_width * channels;
    } else if (w->dilation_width == 1 && x0 >= 0 && x_last < w->input_width) {
      memcpy(column, row + x0 * channels, (size_t)(w->kernel_width * channels) * sizeof(float));
      column += w->kernel_width * channels;
    } else {
      for (kx = 0; kx < w->kernel_width; ++kx, column += channels) {
        const int32_t ix = x0 + kx * w->dilation_width;
        if (ix < 0 || ix >= w->input_width)
          memset(column, 0, (size_t)channels * sizeof(float));
        else
          memcpy(column, row + ix * channels, (size_t)channels * sizeof(float));
      }
    }
  }
}

void eenn_conv_f32(const eenn_conv_f32_t *conv, const float *input, float *output, void *scratch) {
  const eenn_window_t *w = &conv->window;
  const int32_t depth = w->kernel_height * w->kernel_width * w->input_channels;
  const int32_t pixels = w->output_height * w->output_width, channels = w->output_channels;
  const int in_place = reads_in_place(w);
  const float *columns[TILE];
  float *outputs[TILE];
  int32_t p, j;
  for (p = 0; p < pixels; p += TILE) {
    const int32_t count = pixels - p < TILE ? pixels - p : TILE;
    for (j = 0; j < count; ++j) {
      const int32_t q = p + j, oy = q / w->output_width, ox = q % w->output_width;
      float *column = (float *)scratch + j * depth;
      if (in_place) {
        columns[j] = input + ((intptr_t)oy * w->stride_height * w->input_width + ox * w->stride_width) * depth;
      } else {
        fill_column(w, input, q, column);
        columns[j] = column;
      }
      outputs[j] = output + (intptr_t)q * channels;
    }
    matmul_f32(conv->weights, conv->bias, conv->min, conv->max, channels, depth, columns, count, outputs);
  }
}

void eenn_dense_f32(const eenn_dense_f32_t *dense, const float *input, float *output) {
  matmul_f32(dense->weights, dense->bias, dense->min, dense->max, dense->output_features, dense->input_features,
             &input, 1, &output);
}
