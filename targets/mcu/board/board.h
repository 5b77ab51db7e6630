/* board.h: what the verify program needs from the board: an instruction counter and stack measurement. */
#ifndef EENN_BOARD_H
#define EENN_BOARD_H
#include <stddef.h>
#include <stdint.h>

/* Starts the counter; returns instructions per tick x 1000 as calibrated (0 where nothing is counted). */
uint32_t board_counter_start(void);
uint64_t board_counter_ticks(void);
/* Fill the unused stack with a pattern, and later find how deep it was used. */
void board_stack_paint(void);
size_t board_stack_used(void);

#endif
