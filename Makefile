# Tollgate build. `make` builds build/tollgate; `make test` runs the suite;
# `make run` starts the demo; SANITIZE=1 builds with ASan+UBSan (objects in
# build/asan), DEBUG=1 without optimisation.
PREFIX ?= /usr/local
CC ?= cc
LLHTTP_SRC ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp

PKGS := libpcre2-8 luajit openssl zlib libbrotlienc libzstd hiredis liburing
DEPS_OK := $(shell pkg-config --exists $(PKGS) 2>/dev/null && test -f $(LLHTTP_SRC)/llhttp.c \
             && test -f /usr/include/ev.h && echo yes)

CFLAGS_BASE := -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wshadow -g -D_GNU_SOURCE -DPCRE2_CODE_UNIT_WIDTH=8 \
               -Isrc -I$(LLHTTP_INC)
ifeq ($(DEPS_OK),yes)
CFLAGS_BASE += $(shell pkg-config --cflags $(PKGS))
LIBS := -lev $(shell pkg-config --libs $(PKGS)) -lcrypt -lm
endif

ifeq ($(SANITIZE),1)
BUILD := build/asan
OPT := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(DEBUG),1)
BUILD := build/debug
OPT := -O0
else
BUILD := build/release
OPT := -O2
endif
CFLAGS ?=
ALL_CFLAGS := $(CFLAGS_BASE) $(OPT) $(CFLAGS)
LDFLAGS_ALL := $(OPT) $(LDFLAGS)

SRCS := $(sort $(wildcard src/*.c)) $(sort $(wildcard modules/*.c))
OBJS := $(patsubst %.c,$(BUILD)/%.o,$(SRCS))
# llhttp scans header values and URLs 16 bytes at a time with SSE4.2 when the
# compiler may use it: on when the build machine has it (we build where we run)
LLHTTP_SIMD ?= $(shell $(CC) -march=native -dM -E - </dev/null 2>/dev/null | grep -q __SSE4_2__ && echo -msse4.2)
LLHTTP_OBJS := $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o $(BUILD)/llhttp/llhttp.o
UNITS := $(patsubst t/unit/%.c,$(BUILD)/unit/%,$(sort $(wildcard t/unit/*.c)))

.PHONY: all deps run test unit bench clean install fuzz build/tollgate

all: deps build/tollgate

deps:
	@if [ "$(DEPS_OK)" != yes ] || ! command -v node >/dev/null; then contrib/install-deps.sh; fi

# build/tollgate names the flavour built last (phony: a symlink's date is its
# target's, so a release build after a sanitizer build would not relink it)
build/tollgate: $(BUILD)/tollgate
	@mkdir -p build
	@ln -sfn $(notdir $(BUILD))/tollgate build/tollgate

$(BUILD)/tollgate: $(OBJS) $(LLHTTP_OBJS)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(BUILD)/%.o: %.c $(wildcard src/*.h modules/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -O2 $(LLHTTP_SIMD) -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC) -w -c -o $@ $<

# Unit tests: each t/unit/X.c links the objects it needs (all but main.o).
UNIT_OBJS := $(filter-out $(BUILD)/src/main.o,$(OBJS)) $(LLHTTP_OBJS)
# the conf test brings its own module list
CONF_UNIT_OBJS := $(addprefix $(BUILD)/src/,conf.o str.o arena.o)
$(BUILD)/unit/%: t/unit/%.c $(UNIT_OBJS) t/unit/tap.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -It/unit -o $@ $< $(if $(filter conf,$*),$(CONF_UNIT_OBJS),$(UNIT_OBJS)) $(LIBS) $(LDFLAGS_ALL)

unit: $(UNITS)

test: all unit
	@t/setup.sh
	TG_UNIT_DIR=$(BUILD)/unit TG_BIN=$(BUILD)/tollgate prove -r -j2 t/

run: all
	@contrib/run-demo

bench: all
	@contrib/install-deps.sh bench
	contrib/bench/run

fuzz:
	$(MAKE) -C contrib/fuzz

install: all
	install -D -m 755 $(BUILD)/tollgate $(DESTDIR)$(PREFIX)/bin/tollgate
	install -D -m 644 conf/tollgate.conf $(DESTDIR)$(PREFIX)/etc/tollgate/tollgate.conf

clean:
	rm -rf build
