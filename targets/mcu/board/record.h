/* record.h: what the firmware reports of one inference. verify_main.c writes it to results.bin and
 * stream_main.c sends it over the UART; targets/mcu/qemu.py's record_dtype reads it in both. */
#ifndef EENN_RECORD_H
#define EENN_RECORD_H
#include <stdint.h>

#include "eenn_model.h"

typedef struct {
  int32_t status, class_index, exit_index;
  float confidence;
  uint32_t ticks_low, ticks_high;
  float scores[EENN_CLASSES];
} record_t;

/* With EENN_CONTINUE the result holds the device's last exit as well, and so does the record. */
static inline record_t record_of(eenn_status_t status, const eenn_result_t *result, uint64_t ticks) {
  record_t record = {0};
  int32_t i;
  record.status = status;
  record.class_index = result->class_index;
  record.exit_index = result->exit_index;
  record.confidence = result->confidence;
  record.ticks_low = (uint32_t)ticks;
  record.ticks_high = (uint32_t)(ticks >> 32);
  for (i = 0; result->scores != NULL && i < EENN_CLASSES; ++i) record.scores[i] = result->scores[i];
  return record;
}

#endif
