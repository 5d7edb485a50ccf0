/* COM1: a 16550A at 0x3f8, IRQ 4, connected to hvmm's console file
 * descriptors. vCPU threads only touch the register model; the event loop
 * moves bytes between it and the console. Output is written by a thread of
 * its own: a console that blocks (a full pipe, a paused terminal) must not
 * stop the event loop, and with it every device. While that thread's buffer
 * is full the UART's transmit FIFO stays full, so the guest waits for THRE
 * as it would on a slow line. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/vm.h"
#include "dev/uart16550.h"
#include "util/log.h"

#define COM1_BASE 0x3f8
#define COM1_IRQ 4
#define OUT_SIZE (4 * UART_TX_SIZE)

struct serial {
	struct vm *vm;
	pthread_mutex_t lock;
	struct uart16550 uart;
	bool irq_level;
	bool kicked;       /* the loop has been told to look at us */
	bool input_paused; /* the receive buffer was full */
	bool input_open;
	int kick_fd;
	int out_fd;
	struct loop_source kick_src;
	struct loop_source in_src;
	/* Output on its way to out_fd (under lock). */
	pthread_t writer;
	bool writer_started;
	bool writer_stop;
	pthread_cond_t out_cv;
	size_t out_len;
	uint8_t out[OUT_SIZE];
};

/* Called with the lock held after any change of UART state. */
static void serial_update(struct serial *s)
{
	bool level = uart_irq_level(&s->uart);
	bool wants_loop = (s->uart.tx_len > 0 && s->out_len < OUT_SIZE) ||
			  (s->input_paused && uart_rx_space(&s->uart));

	if (level != s->irq_level) {
		s->irq_level = level;
		vm_set_irq(s->vm, COM1_IRQ, level);
	}
	if (wants_loop && !s->kicked) {
		s->kicked = true;
		eventfd_write(s->kick_fd, 1);
	}
}

static void serial_pio(void *opaque, uint16_t port, uint8_t *data, unsigned size, bool is_write)
{
	struct serial *s = opaque;

	pthread_mutex_lock(&s->lock);
	if (is_write)
		uart_write(&s->uart, port - COM1_BASE, data[0]);
	else
		data[0] = uart_read(&s->uart, port - COM1_BASE);
	serial_update(s);
	pthread_mutex_unlock(&s->lock);
}

static void write_all(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return; /* a closed console drops output, as a cable unplugged would */
		}
		buf += n;
		len -= (size_t)n;
	}
}

/* The output thread: writes what the loop moved out of the UART, blocking
 * as long as the console needs, then lets the loop move more. */
static void *serial_writer(void *arg)
{
	struct serial *s = arg;
	uint8_t buf[OUT_SIZE];
	size_t n;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (!s->out_len && !s->writer_stop)
			pthread_cond_wait(&s->out_cv, &s->lock);
		if (!s->out_len)
			break;
		n = s->out_len;
		memcpy(buf, s->out, n);
		pthread_mutex_unlock(&s->lock);
		write_all(s->out_fd, buf, n);
		pthread_mutex_lock(&s->lock);
		memmove(s->out, s->out + n, s->out_len - n);
		s->out_len -= n;
		serial_update(s); /* room again: the loop may drain the UART */
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* Loop thread: hand transmitted bytes to the output thread, resume input
 * when there is room. */
static void serial_kicked(struct loop_source *src, uint32_t events)
{
	struct serial *s = container_of(src, struct serial, kick_src);
	bool resume;
	eventfd_t v;
	size_t n;

	eventfd_read(s->kick_fd, &v);
	pthread_mutex_lock(&s->lock);
	s->kicked = false;
	n = uart_drain_tx(&s->uart, s->out + s->out_len, OUT_SIZE - s->out_len);
	s->out_len += n;
	if (n)
		pthread_cond_signal(&s->out_cv);
	resume = s->input_paused && uart_rx_space(&s->uart);
	if (resume)
		s->input_paused = false;
	serial_update(s);
	pthread_mutex_unlock(&s->lock);
	if (resume)
		loop_modify(s->vm->loop, &s->in_src, EPOLLIN);
}

static void serial_input(struct loop_source *src, uint32_t events)
{
	struct serial *s = container_of(src, struct serial, in_src);
	uint8_t buf[UART_RX_SIZE];
	size_t space;
	ssize_t n;

	pthread_mutex_lock(&s->lock);
	space = uart_rx_space(&s->uart);
	if (!space)
		s->input_paused = true;
	pthread_mutex_unlock(&s->lock);
	if (!space) {
		loop_modify(s->vm->loop, &s->in_src, 0);
		return;
	}
	n = read(src->fd, buf, space);
	if (n <= 0) {
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			return;
		loop_del(s->vm->loop, &s->in_src); /* end of input: the line goes quiet */
		s->input_open = false;
		return;
	}
	pthread_mutex_lock(&s->lock);
	uart_receive(&s->uart, buf, (size_t)n);
	serial_update(s);
	pthread_mutex_unlock(&s->lock);
}

static void serial_exit(struct vm *vm, void *state)
{
	struct serial *s = state;
	uint8_t buf[UART_TX_SIZE];
	size_t n;

	/* Whatever the guest wrote before it stopped still reaches the console:
	 * the output thread writes all it holds before it ends. */
	if (s->writer_started) {
		pthread_mutex_lock(&s->lock);
		s->writer_stop = true;
		pthread_cond_signal(&s->out_cv);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->writer, NULL);
	}
	n = uart_drain_tx(&s->uart, buf, sizeof(buf));
	write_all(s->out_fd, buf, n);
	if (s->input_open)
		loop_del(vm->loop, &s->in_src);
	if (s->kick_fd >= 0) {
		loop_del(vm->loop, &s->kick_src);
		close(s->kick_fd);
	}
	pthread_cond_destroy(&s->out_cv);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int serial_init(struct vm *vm, void **state)
{
	struct serial *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return -ENOMEM;
	*state = s;
	s->vm = vm;
	s->out_fd = vm->cfg->console_out;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->out_cv, NULL);
	uart_reset(&s->uart);
	s->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->kick_fd < 0)
		return -errno;
	ret = loop_add(vm->loop, &s->kick_src, s->kick_fd, EPOLLIN, serial_kicked);
	if (ret) {
		close(s->kick_fd);
		s->kick_fd = -1;
		return ret;
	}
	if (vm->cfg->console_in >= 0) {
		ret = loop_add(vm->loop, &s->in_src, vm->cfg->console_in, EPOLLIN, serial_input);
		/* EPERM: a regular file or /dev/null cannot be polled; no input then. */
		if (ret && ret != -EPERM)
			return ret;
		s->input_open = !ret;
	}
	ret = -pthread_create(&s->writer, NULL, serial_writer, s);
	if (ret)
		return ret;
	s->writer_started = true;
	return pio_register(&vm->pio, COM1_BASE, 8, serial_pio, s);
}

const struct vm_device serial_device = {
	.name = "serial",
	.init = serial_init,
	.exit = serial_exit,
};
