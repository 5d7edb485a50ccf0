/* Unit tests for dev/uart16550: what Linux's 8250 driver probes and relies on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "dev/uart16550.h"

static struct uart16550 u;

static int fresh(void **state)
{
	uart_reset(&u);
	return 0;
}

static void scratch_and_divisor(void **state)
{
	uart_write(&u, UART_SCR, 0xa5);
	assert_int_equal(uart_read(&u, UART_SCR), 0xa5);
	uart_write(&u, UART_LCR, UART_LCR_DLAB);
	uart_write(&u, UART_DLL, 0x01);
	uart_write(&u, UART_DLM, 0x02);
	assert_int_equal(uart_read(&u, UART_DLL), 0x01);
	assert_int_equal(uart_read(&u, UART_DLM), 0x02);
	uart_write(&u, UART_LCR, 0x03);
	assert_int_equal(uart_read(&u, UART_IER), 0); /* DLM did not leak into IER */
	assert_int_equal(u.tx_len, 0);                /* DLL writes are not data */
}

/* Linux's autoconfig: MCR loopback with RTS|OUT2 must read back CTS|DCD. */
static void loopback_modem_lines(void **state)
{
	uart_write(&u, UART_MCR, UART_MCR_LOOP | 0x0a);
	assert_int_equal(uart_read(&u, UART_MSR) & 0xf0, 0x90);
	uart_write(&u, UART_MCR, UART_MCR_LOOP | 0x05);
	assert_int_equal(uart_read(&u, UART_MSR) & 0xf0, 0x60);
	/* Transmitted bytes come back on the receiver, not out of the port. */
	uart_write(&u, UART_THR, 'x');
	assert_int_equal(uart_read(&u, UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	assert_int_equal(uart_read(&u, UART_RBR), 'x');
	assert_int_equal(u.tx_len, 0);
}

static void fifo_identifies_as_16550a(void **state)
{
	uart_write(&u, UART_FCR, UART_FCR_ENABLE);
	assert_int_equal(uart_read(&u, UART_IIR) & 0xc0, 0xc0);
	uart_write(&u, UART_FCR, 0);
	assert_int_equal(uart_read(&u, UART_IIR) & 0xc0, 0);
}

static void thre_interrupt(void **state)
{
	assert_false(uart_irq_level(&u));
	uart_write(&u, UART_IER, UART_IER_THRI); /* empty transmitter: fires at once */
	assert_true(uart_irq_level(&u));
	assert_int_equal(uart_read(&u, UART_IIR) & 0x0f, UART_IIR_THRI);
	assert_false(uart_irq_level(&u)); /* reading IIR acknowledged it */
	assert_int_equal(uart_read(&u, UART_IIR) & 0x0f, UART_IIR_NO_INT);
	uart_write(&u, UART_THR, 'a'); /* sent: empty again, fires again */
	assert_true(uart_irq_level(&u));
	uart_write(&u, UART_IER, 0);
	assert_false(uart_irq_level(&u));
}

static void receive_interrupt_and_priority(void **state)
{
	uint8_t in[3] = { 'a', 'b', 'c' };

	uart_write(&u, UART_IER, UART_IER_RDI | UART_IER_THRI);
	assert_int_equal(uart_receive(&u, in, 3), 3);
	/* Received data outranks THRE. */
	assert_int_equal(uart_read(&u, UART_IIR) & 0x0f, UART_IIR_RDI);
	assert_int_equal(uart_read(&u, UART_RBR), 'a');
	assert_int_equal(uart_read(&u, UART_RBR), 'b');
	assert_int_equal(uart_read(&u, UART_RBR), 'c');
	assert_int_equal(uart_read(&u, UART_LSR) & UART_LSR_DR, 0);
	assert_int_equal(uart_read(&u, UART_IIR) & 0x0f, UART_IIR_THRI);
	assert_int_equal(uart_read(&u, UART_RBR), 0); /* empty: no stale byte */
}

static void receive_overflow(void **state)
{
	uint8_t big[UART_RX_SIZE + 10];

	memset(big, 'z', sizeof(big));
	assert_int_equal(uart_receive(&u, big, sizeof(big)), UART_RX_SIZE);
	assert_int_equal(uart_rx_space(&u), 0);
	assert_int_equal(uart_receive(&u, big, 1), 0); /* the owner keeps the rest */
	uart_read(&u, UART_RBR);
	assert_int_equal(uart_rx_space(&u), 1);
}

/* The guest cannot outrun the console: THRE and TEMT drop while the buffer
 * has no room for a whole FIFO, and a driver that writes a FIFO's worth per
 * THRE loses nothing. Bytes buffered with room to spare count as sent. */
static void transmit_flow_control(void **state)
{
	uint8_t out[UART_TX_SIZE];
	unsigned sent = 0;

	uart_write(&u, UART_THR, 0xaa);
	assert_int_equal(uart_read(&u, UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT),
			 UART_LSR_THRE | UART_LSR_TEMT);
	assert_int_equal(uart_drain_tx(&u, out, sizeof(out)), 1);
	assert_int_equal(out[0], 0xaa);
	while (uart_read(&u, UART_LSR) & UART_LSR_THRE) /* a FIFO at a time, as Linux */
		for (unsigned i = 0; i < UART_FIFO_SIZE; i++)
			uart_write(&u, UART_THR, (uint8_t)sent++);
	assert_int_equal(sent, UART_TX_SIZE);
	assert_int_equal(uart_read(&u, UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT), 0);
	uart_write(&u, UART_IER, UART_IER_THRI);
	assert_false(uart_irq_level(&u));
	assert_int_equal(uart_drain_tx(&u, out, 10), 10); /* not yet room for a FIFO */
	assert_false(uart_read(&u, UART_LSR) & UART_LSR_THRE);
	assert_false(uart_irq_level(&u));
	assert_int_equal(uart_drain_tx(&u, out + 10, 6), 6);
	assert_int_equal(out[0], 0);
	assert_int_equal(out[15], 15);
	assert_true(uart_read(&u, UART_LSR) & UART_LSR_THRE);
	assert_true(uart_read(&u, UART_LSR) & UART_LSR_TEMT);
	assert_true(uart_irq_level(&u)); /* room again is announced */
	assert_int_equal(uart_drain_tx(&u, out, sizeof(out)), UART_TX_SIZE - 16);
	assert_int_equal(out[0], 16);
	assert_true(uart_read(&u, UART_LSR) & UART_LSR_TEMT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(scratch_and_divisor, fresh),
		cmocka_unit_test_setup(loopback_modem_lines, fresh),
		cmocka_unit_test_setup(fifo_identifies_as_16550a, fresh),
		cmocka_unit_test_setup(thre_interrupt, fresh),
		cmocka_unit_test_setup(receive_interrupt_and_priority, fresh),
		cmocka_unit_test_setup(receive_overflow, fresh),
		cmocka_unit_test_setup(transmit_flow_control, fresh),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
