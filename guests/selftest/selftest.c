/*
 * vmharness self-test guest: tiny, exact scenarios that exercise every
 * success and failure path of the harness. The scenario comes from the QEMU
 * fw_cfg file "opt/vmharness/scenario", else from the device tree's
 * /chosen/bootargs (QEMU -append), else it is "banner". See README.md.
 */
#include "platform.h"

#ifndef SELFTEST_DEFAULT_SCENARIO
#define SELFTEST_DEFAULT_SCENARIO "banner"
#endif

#define FWCFG_SIGNATURE 0x0000
#define FWCFG_FILE_DIR 0x0019
#define FWCFG_NAME_LEN 56
#define SCENARIO_MAX 128
#define MAX_WORDS 4
#define EXIT_BAD_SCENARIO 2
#define FLOOD_LINE_LEN 64
#define FLOOD_LINES_PER_MIB (1024 * 1024 / FLOOD_LINE_LEN)
#define FLOOD_MAX_MIB 1024
#define ECHO_LINE_MAX 256
#define EARLY_RX_MAX 64

static const char scenario_file[] = "opt/vmharness/scenario";

/* The compiler may emit calls to these even in freestanding code. */
void *memset(void *dst, int c, usize n)
{
	u8 *d = dst;
	while (n--)
		*d++ = (u8)c;
	return dst;
}

void *memcpy(void *dst, const void *src, usize n)
{
	u8 *d = dst;
	const u8 *s = src;
	while (n--)
		*d++ = *s++;
	return dst;
}

void *memmove(void *dst, const void *src, usize n)
{
	u8 *d = dst;
	const u8 *s = src;
	if (d < s)
		return memcpy(dst, src, n);
	while (n--)
		d[n] = s[n];
	return dst;
}

int memcmp(const void *a, const void *b, usize n)
{
	const u8 *x = a, *y = b;
	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x - *y;
	return 0;
}

static u8 early_rx[EARLY_RX_MAX];
static usize early_rx_len, early_rx_pos;

void rx_save(u8 c)
{
	if (early_rx_len < EARLY_RX_MAX)
		early_rx[early_rx_len++] = c;
}

/* Next input byte: first those saved during plat_init, then the UART's. */
static u8 read_byte(void)
{
	if (early_rx_pos < early_rx_len)
		return early_rx[early_rx_pos++];
	return plat_getc();
}

static usize str_len(const char *s)
{
	usize n = 0;
	while (s[n])
		n++;
	return n;
}

static int str_eq(const char *a, const char *b)
{
	usize n = str_len(a);
	return n == str_len(b) && memcmp(a, b, n) == 0;
}

void put_str(const char *s)
{
	plat_write(s, str_len(s));
}

static void put_line(const char *s)
{
	put_str(s);
	plat_write("\r\n", 2);
}

static void put_dec(usize value)
{
	char buf[20];
	usize i = sizeof(buf);
	do {
		buf[--i] = (char)('0' + value % 10);
		value /= 10;
	} while (value);
	plat_write(buf + i, sizeof(buf) - i);
}

void put_hex(u64 value)
{
	static const char digits[] = "0123456789abcdef";
	char buf[18];
	usize i = sizeof(buf);
	do {
		buf[--i] = digits[value & 0xf];
		value >>= 4;
	} while (value);
	buf[--i] = 'x';
	buf[--i] = '0';
	plat_write(buf + i, sizeof(buf) - i);
}

static void put_banner(void)
{
	put_str("vmharness selftest ");
	put_line(plat_arch);
}

__attribute__((noreturn)) void selftest_exception(usize kind, usize cause, usize pc, usize addr)
{
	put_str("selftest: unexpected exception kind=");
	put_dec(kind);
	put_str(" cause=");
	put_hex(cause);
	put_str(" pc=");
	put_hex(pc);
	put_str(" addr=");
	put_hex(addr);
	put_str("\r\n");
	plat_halt();
}

/* ---- fw_cfg ------------------------------------------------------------ */

static u32 fwcfg_read_be(usize bytes)
{
	u32 value = 0;
	while (bytes--)
		value = (value << 8) | plat_fwcfg_read8();
	return value;
}

/*
 * Copy the scenario file into buf (NUL-terminated, at most cap - 1 bytes).
 * Returns 0 when there is no fw_cfg device or no scenario file.
 */
static int fwcfg_scenario(char *buf, usize cap)
{
	char name[FWCFG_NAME_LEN];
	u32 count, size, i;
	u16 select;
	usize n, j;

	if (!plat_fwcfg_present())
		return 0;
	plat_fwcfg_select(FWCFG_FILE_DIR);
	count = fwcfg_read_be(4);
	for (i = 0; i < count; i++) {
		size = fwcfg_read_be(4);
		select = (u16)fwcfg_read_be(2);
		(void)fwcfg_read_be(2);
		for (j = 0; j < FWCFG_NAME_LEN; j++)
			name[j] = (char)plat_fwcfg_read8();
		name[FWCFG_NAME_LEN - 1] = 0;
		if (!str_eq(name, scenario_file))
			continue;
		plat_fwcfg_select(select);
		n = size < cap - 1 ? size : cap - 1;
		for (j = 0; j < n; j++) {
			buf[j] = (char)plat_fwcfg_read8();
			if (!buf[j])
				break;
		}
		buf[j] = 0;
		return 1;
	}
	return 0;
}

/* ---- device tree ------------------------------------------------------ */

#define FDT_MAGIC 0xd00dfeedu
#define FDT_BEGIN_NODE 1
#define FDT_END_NODE 2
#define FDT_PROP 3
#define FDT_NOP 4

static u32 be32_at(const u8 *p)
{
	return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3];
}

static usize align4(usize n)
{
	return (n + 3) & ~(usize)3;
}

/*
 * Copy /chosen/bootargs of a flattened device tree into buf (NUL-terminated).
 * Returns 0 when there is no valid tree or no such property.
 */
static int fdt_bootargs(const u8 *fdt, char *buf, usize cap)
{
	const u8 *structs, *strings, *p;
	int depth = 0, in_chosen = 0;
	usize n;

	if (!fdt || be32_at(fdt) != FDT_MAGIC)
		return 0;
	structs = fdt + be32_at(fdt + 8);
	strings = fdt + be32_at(fdt + 12);
	for (p = structs;;) {
		u32 token = be32_at(p);
		p += 4;
		if (token == FDT_BEGIN_NODE) {
			const char *name = (const char *)p;
			depth++;
			if (depth == 2)
				in_chosen = str_eq(name, "chosen");
			p += align4(str_len(name) + 1);
		} else if (token == FDT_END_NODE) {
			if (depth-- == 2)
				in_chosen = 0;
		} else if (token == FDT_PROP) {
			u32 len = be32_at(p);
			const char *prop = (const char *)strings + be32_at(p + 4);
			p += 8;
			if (depth == 2 && in_chosen && str_eq(prop, "bootargs")) {
				n = len < cap - 1 ? len : cap - 1;
				memcpy(buf, p, n);
				buf[n] = 0;
				return 1;
			}
			p += align4(len);
		} else if (token != FDT_NOP) {
			return 0; /* FDT_END or a corrupt tree */
		}
	}
}

/* ---- argument parsing -------------------------------------------------- */

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Split s in place into at most MAX_WORDS words; returns the word count, or
 * MAX_WORDS + 1 when there are more (scenarios then reject their arguments).
 */
static int split_words(char *s, char *words[MAX_WORDS])
{
	int count = 0;
	while (*s) {
		while (is_space(*s))
			*s++ = 0;
		if (!*s)
			break;
		if (count == MAX_WORDS)
			return MAX_WORDS + 1;
		words[count++] = s;
		while (*s && !is_space(*s))
			s++;
	}
	return count;
}

/* Parse a decimal number no larger than max; returns 0 on bad input. */
static int parse_uint(const char *s, u32 max, u32 *out)
{
	u64 value = 0;
	if (!*s)
		return 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return 0;
		value = value * 10 + (u64)(*s - '0');
		if (value > max)
			return 0;
	}
	*out = (u32)value;
	return 1;
}

__attribute__((noreturn)) static void bad_args(const char *scenario, const char *why)
{
	put_str("selftest: bad arguments for '");
	put_str(scenario);
	put_str("': ");
	put_line(why);
	plat_exit(EXIT_BAD_SCENARIO);
}

/* Optional single numeric argument with a default and an upper bound. */
static u32 number_arg(int argc, char **argv, u32 fallback, u32 max, const char *why)
{
	u32 value = fallback;
	if (argc > 2 || (argc == 2 && !parse_uint(argv[1], max, &value)))
		bad_args(argv[0], why);
	return value;
}

static void no_args(int argc, char **argv)
{
	if (argc != 1)
		bad_args(argv[0], "takes no arguments");
}

/* ---- scenarios --------------------------------------------------------- */

__attribute__((noreturn)) static void scenario_banner(int argc, char **argv)
{
	no_args(argc, argv);
	put_line("selftest: ok");
	plat_exit(0);
}

__attribute__((noreturn)) static void scenario_panic(int argc, char **argv)
{
	u32 lines = number_arg(argc, argv, 3, 1000000, "expected 'panic [N]', N <= 1000000");
	for (u32 i = 1; i <= lines; i++) {
		put_str("line ");
		put_dec(i);
		put_str("\r\n");
	}
	put_line("panicked at selftest.c:42: deliberate panic");
	/* A backtrace-like line with code addresses, for the harness to symbolize. */
	put_str("  0: ");
	put_hex((u64)(usize)&scenario_panic);
	put_str("\r\n  1: ");
	put_hex((u64)(usize)&plat_halt);
	put_str("\r\n");
	plat_halt();
}

__attribute__((noreturn)) static void scenario_hang(int argc, char **argv)
{
	no_args(argc, argv);
	plat_halt();
}

__attribute__((noreturn)) static void scenario_silent(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	plat_halt();
}

/* Lines of exactly 64 bytes: "flood 00000001 ....\r\n". */
__attribute__((noreturn)) static void scenario_flood(int argc, char **argv)
{
	static const char head[] = "flood 00000000 ";
	const usize digits_end = 14;
	char line[FLOOD_LINE_LEN];
	u32 mib = number_arg(argc, argv, 1, FLOOD_MAX_MIB, "expected 'flood [MiB]', MiB <= 1024");
	u32 lines = mib * FLOOD_LINES_PER_MIB;
	usize i;

	memcpy(line, head, sizeof(head) - 1);
	for (i = sizeof(head) - 1; i < FLOOD_LINE_LEN - 2; i++)
		line[i] = '.';
	line[FLOOD_LINE_LEN - 2] = '\r';
	line[FLOOD_LINE_LEN - 1] = '\n';
	for (u32 n = 0; n < lines; n++) {
		/* Increment the decimal counter in place: no division per line. */
		for (i = digits_end - 1; line[i] == '9'; i--)
			line[i] = '0';
		line[i]++;
		plat_write(line, FLOOD_LINE_LEN);
	}
	put_line("flood: done");
	plat_exit(0);
}

__attribute__((noreturn)) static void scenario_echo(int argc, char **argv)
{
	char line[ECHO_LINE_MAX + 1];
	usize len = 0;
	u8 prev = 0;

	no_args(argc, argv);
	put_line("echo: ready");
	for (;;) {
		u8 c = read_byte();
		if (c == '\n' && prev == '\r') {
			prev = 0;
			continue; /* second half of a CRLF */
		}
		prev = c;
		if (c != '\r' && c != '\n') {
			if (len < ECHO_LINE_MAX)
				line[len++] = (char)c;
			continue;
		}
		line[len] = 0;
		put_str("echo: ");
		put_line(line);
		if (str_eq(line, "exit"))
			plat_exit(0);
		len = 0;
	}
}

__attribute__((noreturn)) static void scenario_exit(int argc, char **argv)
{
	u32 code;
	if (argc != 2 || !parse_uint(argv[1], 255, &code))
		bad_args(argv[0], "expected 'exit C', 0 <= C <= 255");
	put_str("exit: ");
	put_dec(code);
	put_str("\r\n");
	plat_exit(code);
}

/* KTAP with a nested suite, a skip, a failure and a case whose output stops (the guest hangs). */
__attribute__((noreturn)) static void scenario_ktap(int argc, char **argv)
{
	no_args(argc, argv);
	put_line("KTAP version 1");
	put_line("1..3");
	put_line("ok 1 boot");
	put_line("    KTAP version 1");
	put_line("    # Subtest: console");
	put_line("    1..3");
	put_line("    ok 1 write");
	put_line("    ok 2 read # SKIP no input device");
	put_line("    # console.flush: expected 0, got 1");
	put_line("    not ok 3 flush");
	put_line("not ok 2 console");
	put_line("# hang: started");
	plat_halt();
}

__attribute__((noreturn)) static void scenario_probe(int argc, char **argv)
{
	no_args(argc, argv);
	if (!plat_probe()) {
		put_str("selftest: probe not supported on ");
		put_line(plat_arch);
		plat_exit(EXIT_BAD_SCENARIO);
	}
	put_line("vmharness-probe-ok");
	plat_exit(0);
}

struct scenario {
	const char *name;
	void (*run)(int argc, char **argv);
};

static const struct scenario scenarios[] = {
	{ "banner", scenario_banner }, { "panic", scenario_panic },
	{ "hang", scenario_hang },     { "silent", scenario_silent },
	{ "flood", scenario_flood },   { "echo", scenario_echo },
	{ "exit", scenario_exit },     { "probe", scenario_probe },
	{ "ktap", scenario_ktap },
};

__attribute__((noreturn)) void selftest_main(void)
{
	static char request[SCENARIO_MAX];
	static char words_buf[SCENARIO_MAX];
	char *words[MAX_WORDS];
	const char *trimmed;
	int argc;
	usize i;

	plat_init();
	if (!fwcfg_scenario(request, sizeof(request)) &&
	    !fdt_bootargs(plat_fdt(), request, sizeof(request)))
		memcpy(request, SELFTEST_DEFAULT_SCENARIO, sizeof(SELFTEST_DEFAULT_SCENARIO));
	memcpy(words_buf, request, sizeof(request));
	argc = split_words(words_buf, words);

	if (argc >= 1 && str_eq(words[0], "silent"))
		scenario_silent(argc, words);
	put_banner();
	for (i = 0; argc >= 1 && i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		if (str_eq(words[0], scenarios[i].name))
			scenarios[i].run(argc, words);

	trimmed = request;
	while (is_space(*trimmed))
		trimmed++;
	for (i = str_len(trimmed); i > 0 && is_space(trimmed[i - 1]); i--)
		request[trimmed - request + i - 1] = 0;
	put_str("selftest: unknown scenario '");
	put_str(trimmed);
	put_line("'");
	plat_exit(EXIT_BAD_SCENARIO);
}
