# hvmm build. `make` builds build/hvmm; `make test` runs every test and ends
# with "N passed, N failed"; see README.md for the other targets.

CC      ?= gcc
CLANG   ?= clang
B       := build
OPT     ?= -O2 -g
CFLAGS  := $(OPT) -std=gnu17 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
           -D_GNU_SOURCE -Isrc -MMD -MP -fno-strict-aliasing
# jansson: JSON for the management API (strict unpacking of client input).
LDLIBS  := -lpthread -ljansson

# Every .c under src/ except the programs' mains goes into libhvmm.a, so unit
# tests and fuzzers link exactly the code that ships.
MAINS    := src/main.c $(wildcard src/hvctl/main.c)
LIB_SRCS := $(filter-out $(MAINS),$(shell find src -name '*.c' | sort))
LIB_OBJS := $(LIB_SRCS:%.c=$(B)/obj/%.o)
ASL      := $(shell find src -name '*.asl')
AML_OBJS := $(ASL:%.asl=$(B)/obj/%.aml.o)
UNIT     := $(patsubst tests/unit/%.c,$(B)/tests/%,$(wildcard tests/unit/test_*.c))
FUZZ     := $(patsubst fuzz/%.c,$(B)/fuzz/%,$(wildcard fuzz/fuzz_*.c))

PROGRAMS := $(B)/hvmm $(if $(wildcard src/hvctl/main.c),$(B)/hvctl)

all: $(PROGRAMS)

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

# ACPI tables written in ASL are compiled by iasl and linked in as data.
$(B)/obj/%.aml: %.asl
	@mkdir -p $(@D)
	iasl -vs -vi -p $(basename $@) $< >/dev/null
$(B)/obj/%.aml.o: $(B)/obj/%.aml
	printf '.section .rodata\n.global %s\n%s:\n.incbin "%s"\n.global %s_end\n%s_end:\n.section .note.GNU-stack,"",@progbits\n' \
	  $(notdir $(*F))_aml $(notdir $(*F))_aml $< $(notdir $(*F))_aml $(notdir $(*F))_aml | $(CC) -c -x assembler -o $@ -

$(B)/libhvmm.a: $(LIB_OBJS) $(AML_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(B)/hvmm: $(B)/obj/src/main.o $(B)/libhvmm.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(B)/hvctl: $(B)/obj/src/hvctl/main.o $(B)/libhvmm.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(B)/tests/%: tests/unit/%.c $(B)/libhvmm.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(B)/libhvmm.a $(LDLIBS) -lcmocka

# Sanitizer build of the unit tests (ASan + UBSan), in its own tree.
asan:
	$(MAKE) B=$(B)/asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" unit-build

unit-build: $(UNIT)

# libFuzzer targets: clang, with every library source compiled in.
$(B)/fuzz/%: fuzz/%.c $(LIB_SRCS) $(AML_OBJS)
	@mkdir -p $(@D)
	$(CLANG) -std=gnu17 -g -O1 -D_GNU_SOURCE -DFUZZING -Isrc -Itests/unit -MMD -MP -MF $@.d -fsanitize=fuzzer,address,undefined \
	  -o $@ $< $(LIB_SRCS) $(AML_OBJS) $(LDLIBS)

fuzz-build: $(FUZZ)

test: all unit-build asan fuzz-build
	tests/run-all

e2e: all
	tests/e2e/run

demo:
	scripts/install-deps
	$(MAKE) all
	scripts/demo

bench: all
	bench/boot
	bench/storage

clean:
	rm -rf $(B)

.SECONDARY:
.PHONY: all asan unit-build fuzz-build test e2e demo bench clean
-include $(shell find $(B) -name '*.d' 2>/dev/null)
