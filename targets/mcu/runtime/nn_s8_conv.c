/* nn_s8_conv.c: int8 convolution as im2col + matmul, and dense layers as a matmul of one column.
 *
 * For each four output pixels, the windows are copied once into a block of int16 columns (minus the input zero
 * point, padding as 0), then each output channel is a register-blocked dot product with all four
 * (nn_s8_matmul.c): no bounds test in the multiply-accumulate loop, and the copy serves every output channel. */
#include "nn_s8_support.h"

static int32_t window_depth(const eenn_window_t *w) {
  return w->kernel_height * w->kernel_width * w->input_channels;
}

/* Runs of a length that is not a multiple of four cannot be reordered where they land: they are gathered as
 * int8 first (padding as the zero point) and converted in one go. */
static int needs_staging(const eenn_window_t *w) { return (w->input_channels & 3) != 0; }

/* The same on every core (Helium's int8 columns take half of it), so the planner need not know the core. */
size_t eenn_conv_s8_scratch_bytes(const eenn_conv_s8_t *conv) {
  const size_t depth = (size_t)window_depth(&conv->window);
  const size_t staging = needs_staging(&conv->window) ? (depth + 3) & ~(size_t)3 : 0;
  return BLOCK_COLUMNS * depth * sizeof(int16_t) + staging;
}

typedef struct {
  int16_t *block;
  int32_t columns, column;
  int8_t *staging; /* NULL: runs go straight into the block */
  int32_t at, zero_point;
} column_writer_t;

static void write_run(column_writer_t *cw, const int8_t *x, int32_t count) {
  if (cw->staging != NULL)
    memcpy(cw->staging + cw->at, x, (size_t)count);
  else
    block_append(cw->block, cw->columns, cw->column, cw->at, x, count, cw->zero_point);
  cw->at += count;
}

static void write_padding(column_writer_t *cw, int32_t count) {
  if (cw->staging != NULL)
    memset(cw->staging + cw->at, (int8_t)cw->zero_point, (size_t)count);
  else
    block_pad(cw->block, cw->columns, cw->column, cw->at, count);
  cw->at += count;
}

/* The window of output pixel p into column `column` of the block. A kernel row wholly inside the input (and
 * undilated along it) is one run of kw * channels bytes; the test for padding is per tap, never per value. */
static void fill_column(const eenn_conv_s8_t *conv, const int8_t *input, int32_t p, column_writer_t *cw) {
  const eenn_window_t *w = &conv->window;
  const int32_t channels = w->input_channels, row_bytes = w->input_width * channels;
  const int32_t oy = p / w->output_width, ox = p % w->output_width;
  const int32_t y0 = oy * w->stride_height - w->pad_top, x0 = ox * w->stride_width - w->pad_left;
  const int32_t x_last = x0 + (w->kernel_width - 1) * w->dilation_width;
  int32_t ky, kx;
  cw->at = 0;
  for (ky = 0; ky < w->kernel_height; ++ky) {
    const int32_t iy = y0 + ky * w->dilation_height;
    const int8_t *row = input + (intptr_t)iy * row_bytes;
    if (iy < 0 || iy >= w->input_height) {
      write_padding(cw, w->kernel_width * channels);
    } else if (w->dilation_width == 1 && x0 >= 0 && x_last < w->input_width) {
      write_run(cw, row + x0 * channels, w->kernel_width * channels);
    } else {
      for (kx = 0; kx < w->kernel_width; ++kx) {
        const int32_t ix = x0 + kx * w->dilation_width;
        if (ix < 0 || ix >= w->input_width)
          write_padding(cw, channels);
        else
          write_run(cw, row + ix * channels, channels);
      }
    }
  }
  if (cw->staging != NULL && !EENN_MVE)
    block_append(cw->block, cw->columns, cw->column, 0, cw->staging, cw->at, cw->zero_point);
}

void eenn_conv_s8(const eenn_conv_s8_t *conv, const int8_t *input, int8_t *output, void *scratch) {
  const eenn_window_t *w = &conv->window;
  const int32_t depth = window_depth(w), channels = w->output_channels;
  const int32_t pixels = w->output_height * w->output_width;
  const output_stage_t stage = output_stage(conv->output, conv->scales, channels);
  int8_t *outputs[BLOCK_COLUMNS];
  column_writer_t cw;
  int32_t p;
  cw.block = (int16_t *)scratch;
  cw.staging = needs_staging(w) ? (int8_t *)scratch + BLOCK_COLUMNS * depth * sizeof(int16_t) : NULL;
  cw.zero_point = conv->input_zero_point;
  for (p = 0; p < pixels; p += BLOCK_COLUMNS) {
    cw.columns = pixels - p < BLOCK_COLUMNS ? pixels - p : BLOCK_COLUMNS;
    for (cw.column = 0; cw.column < cw.columns; ++cw.column) {
#if EENN_MVE
      cw.staging = (int8_t *)scratch + cw.column * depth; /* Helium takes the int8 columns as they are */
#endif
      fill_column(conv, input, p + cw.column, &cw);
      outputs[cw.column] = output + (intptr_t)(p + cw.column) * channels;
    }
#if EENN_MVE
    matmul_s8_mve(conv->weights, conv->bias, conv->scales, &stage, channels, depth, (const int8_t *)scratch,
                  cw.columns, conv->input_zero_point, outputs);
#else
    matmul_s8(conv->weights, conv->bias, conv->scales, &stage, channels, depth, cw.block, cw.columns, outputs);
#endif
  }
}

/* Rows whose values lie one after the other (a single row, or rows of input_features): read in place; others are
 * gathered first, up to four at a time (scratch: the gathered rows, then on the DSP cores their int16 block). */
static int rows_in_place(const eenn_dense_s8_t *dense) {
  return dense->feature_stride == 1 && (dense->rows == 1 || dense->row_stride == dense->input_features);
}

static size_t gathered_bytes(const eenn_dense_s8_t *dense) {
  const size_t columns = (size_t)(dense->rows < BLOCK_COLUMNS ? dense->rows : BLOCK_COLUMNS);
  return rows_in_place(dense) ? 0 : (columns * (size_t)dense->input_features + 3) & ~(size_t)3;
}

/* The same on every core (Helium reads the int8 rows and leaves the int16 block unused), as the planner has it. */
size_t eenn_dense_s8_scratch_bytes(const eenn_dense_s8_t *dense) {
  const size_t columns = (size_t)(dense->rows < BLOCK_COLUMNS ? dense->rows : BLOCK_COLUMNS);
  return gathered_bytes(dense) + ((columns * (size_t)dense->input_features * sizeof(int16_t) + 3) & ~(size_t)3);
}

void eenn_dense_s8(const eenn_dense_s8_t *dense, const int8_t *input, int8_t *output, void *scratch) {
  const output_stage_t stage = output_stage(dense->output, dense->scales, dense->output_features);
  const int32_t depth = dense->input_features, units = dense->output_features;
  const int in_place = rows_in_place(dense);
  int8_t *gathered = (int8_t *)scratch;
  int32_t first, j, k;
#if !EENN_MVE
  int16_t *block = (int16_t *)((uint8_t *)scratch + gathered_bytes(dense));
#endif
  for (first = 0; first < dense->rows; first += BLOCK_COLUMNS) {
    const int32_t columns = dense->rows - first < BLOCK_COLUMNS ? dense->rows - first : BLOCK_COLUMNS;
    const int8_t *rows = in_place ? input + (intptr_t)first * depth : gathered;
    int8_t *outputs[BLOCK_COLUMNS];
    for (j = 0; j < columns; ++j) {
      const int8_t *x = input + (intptr_t)(first + j) * dense->row_stride;
      outputs[j] = output + (intptr_t)(first + j) * units;
      if (!in_place)
        for (k = 0; k < depth; ++k) gathered[j * depth + k] = x[(intptr_t)k * dense->feature_stride];
    }
#if EENN_MVE
    matmul_s8_mve(dense->weights, dense->bias, dense->scales, &stage, units, depth, rows, columns,
                  dense->input_zero_point, outputs);
#else
    for (j = 0; j < columns; ++j) block_append(block, columns, j, 0, rows + j * depth, depth, dense->input_zero_point);
    matmul_s8(dense->weights, dense->bias, dense->scales, &stage, units, depth, block, columns, outputs);
#endif
  }
}
