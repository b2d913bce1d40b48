# Tollgate build. `make` builds build/tollgate; `make test` runs the suite;
# `make run` starts the demo; SANITIZE=1 builds with ASan+UBSan (objects in
# build/asan), DEBUG=1 without optimisation.
#
# Two stages, so that every target works the first time on a fresh machine:
# make reads a makefile whole before it runs any recipe, so flags computed at
# parse time (pkg-config, the compiler's SSE4.2 probe) would be those of a
# machine without the packages. The outer stage (TG_MAKE_STAGE unset) computes
# nothing: it installs what is missing (DEPS_INSTALL, the build set of
# contrib/install-deps.sh), and only then runs the same goals in a sub-make,
# the inner stage, which computes the flags on the machine as it now is and
# builds. With -j, nothing compiles before the install has finished.
PREFIX ?= /usr/local
SYSCONFDIR ?= $(PREFIX)/etc
DATADIR ?= $(PREFIX)/share
CC ?= cc
LLHTTP_SRC ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp
DEPS_INSTALL ?= contrib/install-deps.sh

# the libraries linked; PKGS_NEXT: packages the outer stage checks for but nothing links
# yet (none now; t/110 passes one to see the install step run before the build)
PKGS := libpcre2-8 luajit openssl zlib libbrotlienc libzstd hiredis liburing libsystemd libnghttp2 libcares jansson
PKGS_NEXT :=

ifndef TG_MAKE_STAGE
# ------------------------------------------------------------ outer stage
TG_GOALS := $(or $(MAKECMDGOALS),all)
.PHONY: $(TG_GOALS) tg-stages
$(TG_GOALS): tg-stages
	@:
# the check is what the build needs, done when the recipe runs (fast: no dpkg
# when all is there); `make clean` needs nothing
tg-stages:
ifneq ($(filter-out clean,$(TG_GOALS)),)
	@if ! { pkg-config --exists $(PKGS) $(PKGS_NEXT) && test -f $(LLHTTP_SRC)/llhttp.c && \
	        test -f /usr/include/ev.h && command -v $(CC) && command -v node; } >/dev/null 2>&1; \
	 then $(DEPS_INSTALL) build; fi
endif
	@$(MAKE) --no-print-directory TG_MAKE_STAGE=inner $(MAKECMDGOALS)

else
# ------------------------------------------------------------ inner stage
# `make` without a goal builds `all`, whatever rule comes first below
.DEFAULT_GOAL := all
ifneq ($(filter-out clean,$(or $(MAKECMDGOALS),all)),)
ifneq ($(shell pkg-config --exists $(PKGS) && echo yes),yes)
$(error pkg-config does not find all of $(PKGS): contrib/install-deps.sh installs them)
endif
endif
CFLAGS_BASE := -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wshadow -g -D_GNU_SOURCE -DPCRE2_CODE_UNIT_WIDTH=8 \
               -Isrc -I$(LLHTTP_INC)
CFLAGS_BASE += $(shell pkg-config --cflags $(PKGS))
LIBS := -lev $(shell pkg-config --libs $(PKGS)) -lcrypt -lm

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
# what `tollgate -V` says about the build (given to src/version.c only); the
# versions of libraries without a run-time version call come from pkg-config
TG_BUILD_INFO := -DTG_BUILD_CC='"$(CC)"' -DTG_BUILD_CFLAGS='"$(ALL_CFLAGS)"' \
    -DTG_BUILD_LDFLAGS='"$(LDFLAGS_ALL) $(LIBS)"' -DTG_BUILD_FLAVOUR='"$(notdir $(BUILD))"' \
    -DTG_BUILD_PKGS='"$(foreach p,$(PKGS),$(p)=$(shell pkg-config --modversion $(p)))"' \
    -DTG_BUILD_LIBURING='"$(shell pkg-config --modversion liburing)"' \
    -DTG_BUILD_LIBSYSTEMD='"$(shell pkg-config --modversion libsystemd)"' \
    $(if $(filter libnghttp2,$(PKGS)),-DTG_HAVE_NGHTTP2)
$(BUILD)/src/version.o: ALL_CFLAGS += $(TG_BUILD_INFO)

# the installed layout compiled in, as nginx does: the config read without -c
# and the Lua libraries' directory (lua_package_path's default); the objects
# that use them are rebuilt when PREFIX, SYSCONFDIR or DATADIR change
TG_PATHS := $(SYSCONFDIR)/tollgate/tollgate.conf $(DATADIR)/tollgate/lua
TG_PATH_OBJS := $(BUILD)/src/main.o $(BUILD)/src/version.o $(BUILD)/modules/lua.o
$(TG_PATH_OBJS): ALL_CFLAGS += -DTG_DEFAULT_CONF='"$(word 1,$(TG_PATHS))"' \
    -DTG_LUA_LIB_DIR='"$(word 2,$(TG_PATHS))"'
$(TG_PATH_OBJS): $(BUILD)/paths.stamp
$(BUILD)/paths.stamp: FORCE
	@mkdir -p $(BUILD)
	@echo '$(TG_PATHS)' | cmp -s - $@ || echo '$(TG_PATHS)' > $@
.PHONY: FORCE
FORCE:

SRCS := $(sort $(wildcard src/*.c)) $(sort $(wildcard modules/*.c))
OBJS := $(patsubst %.c,$(BUILD)/%.o,$(SRCS))
# llhttp scans header values and URLs 16 bytes at a time with SSE4.2 when the
# compiler may use it: on when the build machine has it (we build where we run)
LLHTTP_SIMD ?= $(shell $(CC) -march=native -dM -E - </dev/null 2>/dev/null | grep -q __SSE4_2__ && echo -msse4.2)
LLHTTP_OBJS := $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o $(BUILD)/llhttp/llhttp.o
UNITS := $(patsubst t/unit/%.c,$(BUILD)/unit/%,$(sort $(wildcard t/unit/*.c)))

.PHONY: all deps run test unit bench clean install fuzz man deb build/tollgate

all: build/tollgate

# the outer stage installed the build set
deps:

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

# Files that mostly wait on timers (OCSP nextUpdate, DNS TTLs and a minute
# of DNS down, ACME renewal): t/run.sh runs them one by one beside
# `prove -j2` of the rest, so they do not hold a slot of its two.
TESTS_WAITING := t/644-ocsp.t t/232-upstream-resolve.t t/642-acme-renew.t
# the longest of the rest first, so that none ends the run alone
TESTS_LONG := t/125-deb-package.t t/702-app-rolling.t t/621-grpc.t t/950-valgrind.t \
              t/603-http2-websocket.t t/272-static-large.t t/434-cache-disk.t
TESTS := $(TESTS_LONG) $(filter-out $(TESTS_WAITING) $(TESTS_LONG),$(sort $(wildcard t/*.t)))

test: all unit
	@t/setup.sh
	TG_UNIT_DIR=$(BUILD)/unit TG_BIN=$(BUILD)/tollgate t/run.sh $(TESTS_WAITING) -- $(TESTS)

run: all
	@contrib/run-demo

bench: all
	@$(DEPS_INSTALL) bench
	contrib/bench/run
	contrib/bench/lua-compare
	contrib/bench/grpc-compare
	contrib/bench/cache-offload

# contrib/fuzz/Makefile has the same two stages (it installs clang)
fuzz:
	$(MAKE) -C contrib/fuzz

# the binary, the systemd unit (its paths made those of PREFIX), a config
# unless there is one already (an edited config is never overwritten; 0640:
# a config can hold secrets, and only the master, root, reads it), the Lua
# libraries where lua_package_path's default finds them, the man pages
install: $(BUILD)/tollgate
	install -D -m 755 $(BUILD)/tollgate $(DESTDIR)$(PREFIX)/bin/tollgate
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed -e 's|/usr/local/etc|$(SYSCONFDIR)|g' -e 's|/usr/local|$(PREFIX)|g' \
	    contrib/systemd/tollgate.service \
	    > $(DESTDIR)$(PREFIX)/lib/systemd/system/tollgate.service
	@test -e $(DESTDIR)$(SYSCONFDIR)/tollgate/tollgate.conf || \
	 install -D -m 640 conf/production.conf $(DESTDIR)$(SYSCONFDIR)/tollgate/tollgate.conf
	install -d $(DESTDIR)$(DATADIR)/tollgate/lua/tollgate
	install -m 644 lua/tollgate/*.lua $(DESTDIR)$(DATADIR)/tollgate/lua/tollgate/
	install -D -m 644 man/tollgate.8 $(DESTDIR)$(DATADIR)/man/man8/tollgate.8
	install -D -m 644 man/tollgate.conf.5 $(DESTDIR)$(DATADIR)/man/man5/tollgate.conf.5

# man/tollgate.conf.5 is made from docs/ (t/135-man.t checks it is in step)
man:
	contrib/gen-man > man/tollgate.conf.5.tmp && mv man/tollgate.conf.5.tmp man/tollgate.conf.5

# The Debian package, with the Debian tooling (the `package` set of
# contrib/install-deps.sh: dpkg-dev, debhelper, fakeroot, lintian): a copy of
# the tree in build/deb, dpkg-buildpackage there, build/deb/tollgate_VERSION_ARCH.deb
DEB_VERSION = $(shell dpkg-parsechangelog -S Version -l debian/changelog)
DEB_ARCH = $(shell dpkg --print-architecture)
deb:
	@$(DEPS_INSTALL) package
	rm -rf build/deb && mkdir -p build/deb/tollgate
	cp -a Makefile src modules lua conf contrib debian $(wildcard man doc) build/deb/tollgate/
	# the package is the release build whatever this make was given
	# (SANITIZE=1, BUILD=...): the sub-make must not inherit it
	cd build/deb/tollgate && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES \
	    -u SANITIZE -u DEBUG -u BUILD -u TG_MAKE_STAGE \
	    DEB_BUILD_OPTIONS="parallel=2 $(DEB_BUILD_OPTIONS)" dpkg-buildpackage -b --no-sign
	@echo "built build/deb/tollgate_$(DEB_VERSION)_$(DEB_ARCH).deb"
	lintian --fail-on error build/deb/tollgate_$(DEB_VERSION)_$(DEB_ARCH).deb

clean:
	rm -rf build

endif
