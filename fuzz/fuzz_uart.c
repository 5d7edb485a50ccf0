/* libFuzzer: arbitrary register traffic and host input against the 16550
 * model; its buffers must never be overrun and its invariants must hold. */
#include <stdint.h>
#include <stdlib.h>

#include "dev/uart16550.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct uart16550 u;
	uint8_t out[UART_TX_SIZE];

	uart_reset(&u);
	for (size_t i = 0; i + 1 < size; i += 2) {
		uint8_t op = data[i], val = data[i + 1];

		switch (op >> 4) {
		case 0: uart_write(&u, op & 7, val); break;
		case 1: uart_read(&u, op & 7); break;
		case 2: uart_receive(&u, data + i, size - i < val ? size - i : val); break;
		case 3: uart_drain_tx(&u, out, val); break;
		default: uart_irq_level(&u); break;
		}
		if (u.rx_len > UART_RX_SIZE || u.tx_len > UART_TX_SIZE ||
		    u.rx_head >= UART_RX_SIZE || u.tx_head >= UART_TX_SIZE)
			abort();
	}
	return 0;
}
