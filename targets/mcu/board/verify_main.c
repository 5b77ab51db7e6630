/* verify_main.c: runs eenn_infer on every input in inputs.bin and writes one record per sample to
 * results.bin, and for a sample the device hands over (EENN_CONTINUE) its live tensor to live.bin
 * (semihosting file I/O on the target, plain files on the host). `eenn-tvm verify` and `run` drive it. */
#include <stdio.h>

#include "board.h"
#include "eenn_model.h"

typedef struct {
  int32_t status, class_index, exit_index;
  float confidence;
  uint32_t ticks_low, ticks_high;
  float scores[EENN_CLASSES];
} record_t;

static float input[EENN_INPUT_ELEMENTS];

int main(void) {
  FILE *in = fopen("inputs.bin", "rb"), *out = fopen("results.bin", "wb"), *live = fopen("live.bin", "wb");
  uint32_t milli_instructions_per_tick;
  size_t samples = 0;
  if (in == NULL || out == NULL || live == NULL) {
    printf("eenn: cannot open inputs.bin, results.bin or live.bin\n");
    return 1;
  }
  milli_instructions_per_tick = board_counter_start();
  board_stack_paint();
  while (fread(input, sizeof(float), EENN_INPUT_ELEMENTS, in) == EENN_INPUT_ELEMENTS) {
    eenn_result_t result = {0};
    record_t record = {0};
    uint64_t start = board_counter_ticks(), ticks;
    int32_t i;
    record.status = eenn_infer(input, &result);
    ticks = board_counter_ticks() - start;
    record.class_index = result.class_index;
    record.exit_index = result.exit_index;
    record.confidence = result.confidence;
    record.ticks_low = (uint32_t)ticks;
    record.ticks_high = (uint32_t)(ticks >> 32);
    for (i = 0; result.scores != NULL && i < EENN_CLASSES; ++i) record.scores[i] = result.scores[i];
    fwrite(&record, sizeof(record), 1, out);
    if (record.status == EENN_CONTINUE) fwrite(result.live, 1, result.live_bytes, live);
    ++samples;
  }
  fclose(live);
  fclose(out);
  fclose(in);
  printf("eenn: samples=%lu milli_instructions_per_tick=%lu stack_bytes=%lu\n", (unsigned long)samples,
         (unsigned long)milli_instructions_per_tick, (unsigned long)board_stack_used());
  return 0;
}
