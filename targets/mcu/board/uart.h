/* uart.h: the board's serial port, polled: a byte stream to and from whatever is on the other end (in QEMU a
 * socket; on a sensor node, a radio module). Blocking, no interrupts, no buffering beyond the hardware's. */
#ifndef EENN_UART_H
#define EENN_UART_H
#include <stddef.h>

void board_uart_init(void);
void board_uart_write(const void *data, size_t bytes);
void board_uart_read(void *data, size_t bytes);

#endif
