# lray build. `make` builds build/lray; see README.md for the two entry points.
BUILD   ?= build
CC      ?= cc
WERROR  ?= $(if $(CI),1,0)
CFLAGS  ?= -O2 -g
LR_CFLAGS = -std=gnu11 -Wall -Wextra -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wvla -Icore -MMD -MP \
            -I/usr/include/luajit-2.1 \
            $(if $(filter 1,$(WERROR)),-Werror) $(SANFLAGS)
LIBS    = -lluajit-5.1 -luv -lxxhash -lsodium -ledit -lrt -lpthread -ldl -lm
LDFLAGS += -Wl,-E $(SANFLAGS)

SRCS     := $(filter-out core/test/%,$(wildcard core/*/*.c))
OBJS     := $(SRCS:%.c=$(BUILD)/%.o)
LIB_OBJS := $(filter-out $(BUILD)/core/main/%,$(OBJS))
TEST_SRCS:= $(wildcard core/test/*.c)
TEST_OBJS:= $(TEST_SRCS:%.c=$(BUILD)/%.o)
STAMP    := $(BUILD)/.deps-ok

.PHONY: all deps run test test-c spec chaos netns-test asan fuzz fuzz-ci fuzz-build fuzz-bins fuzz-merge fuzz-corpus clean examples lint install uninstall gen gen-check
all: $(BUILD)/lray

$(STAMP): scripts/deps.sh
	@sh scripts/deps.sh
	@mkdir -p $(BUILD) && touch $@

deps: $(STAMP)

$(BUILD)/%.o: %.c | $(STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LR_CFLAGS) -c $< -o $@

# The dashboard page, linked into the binary as bytes (core.dashboard_page).
PAGE_OBJ := $(BUILD)/dash_page.o
$(PAGE_OBJ): core/dash/page.html | $(STAMP)
	@mkdir -p $(dir $@)
	ld -r -b binary -z noexecstack -o $@ $<

$(BUILD)/lray: $(OBJS) $(PAGE_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/test_c: $(LIB_OBJS) $(TEST_OBJS) $(PAGE_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

run: $(BUILD)/lray
	$(BUILD)/lray examples/quickstart.lua

test-c: $(BUILD)/test_c
	$(BUILD)/test_c

spec: $(BUILD)/lray
	LRAY_PROTO_STRICT=1 LRAY_BIN=$(abspath $(BUILD)/lray) busted --lua=$(abspath $(BUILD)/lray) spec

# Lua globals and unused code; C include rules; generated files up to date.
lint: $(STAMP) gen-check
	luacheck --no-color -q lua spec examples chaos

# The API reference, the LuaLS definitions and the luacheck std, all made from
# docs/api_ref.lua by scripts/docgen.lua. gen-check fails when they are stale.
LUAJIT    ?= luajit
GEN_FILES := docs/reference.md types/library/lray.d.lua types/library/lray.testing.d.lua \
             lua/lray/luacheck_std.lua
gen: $(STAMP)
	$(LUAJIT) scripts/docgen.lua .

gen-check: $(STAMP)
	@rm -rf $(BUILD)/gen && $(LUAJIT) scripts/docgen.lua $(BUILD)/gen
	@for f in $(GEN_FILES); do cmp -s $$f $(BUILD)/gen/$$f || \
	  { echo "$$f is stale (or missing): edit docs/api_ref.lua, then run make gen"; exit 1; }; done

# CI (CI=true) runs more than a developer's `make test`: each suite that is
# too slow for every edit adds its target to CI_TESTS (sanitizers, fuzzing,
# chaos), and CI runs them after the rest passed.
CI_TESTS := netns-test
test: lint test-c spec
	@$(if $(and $(CI),$(strip $(CI_TESTS))),$(MAKE) $(CI_TESTS),true)

# The cluster across Linux network namespaces (root; skips otherwise): a
# head and two nodes on a bridge, one killed, one cut off. ~35 s.
netns-test: $(BUILD)/lray
	LRAY_BIN=$(abspath $(BUILD)/lray) bash scripts/netns/netns_test.sh

# The C tests and the specs built with ASan and UBSan (float-cast-overflow is
# not in GCC's "undefined": added). CI runs it (CI_TESTS=: not again inside).
CI_TESTS += asan

# The chaos suite (chaos/*_spec.lua, docs/reliability.md "Chaos"): fixed
# seeds; LRAY_CHAOS_SCALE=S multiplies its counts, LRAY_CHAOS_SEED changes them.
# ~1 min; CI runs it.
CI_TESTS += chaos
chaos: $(BUILD)/lray
	LRAY_BIN=$(abspath $(BUILD)/lray) busted --lua=$(abspath $(BUILD)/lray) chaos

asan:
	LSAN_OPTIONS=suppressions=$(abspath scripts/lsan.supp):print_suppressions=0 $(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fno-omit-frame-pointer" \
	  SANFLAGS="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow" \
	  CI_TESTS= test

# -- Fuzzing ------------------------------------------------------------------
# libFuzzer targets (fuzz/fuzz_<target>.c; docs/reliability.md, "Fuzzing"),
# built with clang, ASan and UBSan into build-fuzz/. `make fuzz` runs each
# for FUZZ_SECONDS on the seeds in fuzz/corpus/<target> (make fuzz-corpus
# writes them) plus what earlier runs found (build-fuzz/corpus/<target>);
# crashes are saved as build-fuzz/crashes/<target>-*. `make fuzz-merge` adds
# the found inputs that reach new code to fuzz/corpus. CI runs fuzz-ci.
FUZZ_TARGETS    := proto proto_lua ser frame auth
FUZZ_SECONDS    ?= 60
FUZZ_CI_SECONDS ?= 20
FUZZ_BUILD      := build-fuzz
FUZZ_BINS       := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz/fuzz_%)
FUZZ_FLAGS      ?=
FUZZ_MAKE = $(MAKE) BUILD=$(FUZZ_BUILD) CC=clang CFLAGS="-O1 -g -fno-omit-frame-pointer" \
  SANFLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"

$(BUILD)/fuzz/fuzz_%: $(BUILD)/fuzz/fuzz_%.o $(LIB_OBJS) $(PAGE_OBJ)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LIBS)

.PRECIOUS: $(BUILD)/fuzz/%.o
fuzz-bins: $(FUZZ_BINS)
fuzz-build:
	@$(FUZZ_MAKE) fuzz-bins

# $(call fuzz_run,target,seconds)
fuzz_run = mkdir -p $(FUZZ_BUILD)/corpus/$(1) $(FUZZ_BUILD)/crashes && \
  $(FUZZ_BUILD)/fuzz/fuzz_$(1) -max_total_time=$(2) -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/crashes/$(1)- $(FUZZ_FLAGS) \
    $(FUZZ_BUILD)/corpus/$(1) fuzz/corpus/$(1)

fuzz: fuzz-build
	@set -e; $(foreach t,$(FUZZ_TARGETS),echo "== fuzz_$(t): $(FUZZ_SECONDS) s"; $(call fuzz_run,$(t),$(FUZZ_SECONDS));)

# CI runs each target on a fixed seed for a fixed number of inputs, so a
# red CI can be replayed (`make fuzz-ci` gives the same inputs; what Lua code
# runs on them may still vary with addresses, as tables hash by address:
# docs/reliability.md, "What the runs found", 5); finding new bugs is `make
# fuzz`'s job (random seeds, FUZZ_SECONDS each).
FUZZ_CI_RUNS    ?= 200000
FUZZ_CI_TARGETS := $(FUZZ_TARGETS)
CI_TESTS += fuzz-ci
fuzz-ci: FUZZ_FLAGS += -seed=1 -runs=$(FUZZ_CI_RUNS)
fuzz-ci: fuzz-build
	@set -e; $(foreach t,$(FUZZ_CI_TARGETS),echo "== fuzz_$(t): $(FUZZ_CI_SECONDS) s"; \
	  $(call fuzz_run,$(t),$(FUZZ_CI_SECONDS)) 2>$(FUZZ_BUILD)/fuzz_$(t).log || \
	  { tail -60 $(FUZZ_BUILD)/fuzz_$(t).log; exit 1; }; grep -h 'DONE\|^stat::number_of_exec\|^stat::new' $(FUZZ_BUILD)/fuzz_$(t).log;)

fuzz-merge: fuzz-build
	@set -e; $(foreach t,$(FUZZ_TARGETS),$(FUZZ_BUILD)/fuzz/fuzz_$(t) -merge=1 \
	  fuzz/corpus/$(t) $(FUZZ_BUILD)/corpus/$(t) 2>&1 | grep -h 'MERGE-OUTER: [0-9]* new';)

# The seeds: real messages of every type, values and frames, made by
# fuzz/gen_corpus.lua under build/lray.
fuzz-corpus: $(BUILD)/lray
	$(BUILD)/lray fuzz/gen_corpus.lua fuzz/corpus

clean:
	rm -rf build build-asan build-fuzz

# -- Install ------------------------------------------------------------------
# make install [PREFIX=/usr/local] [DESTDIR=]: the binary, the Lua modules in
# LuaJIT's module path for PREFIX (luajit.pc's INSTALL_LMOD), the man page and
# the editor definitions. build/lray finds ../lua; an installed lray finds
# ../share/lua/5.1 beside its bin/ (core/main/lray.c). LuaRocks passes BINDIR
# and LUADIR itself (lray-scm-1.rockspec).
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
LUADIR  ?= $(shell pkg-config --define-variable=prefix=$(PREFIX) --variable=INSTALL_LMOD luajit \
             2>/dev/null || echo $(PREFIX)/share/lua/5.1)
MANDIR  ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share/lray
LUA_FILES := $(patsubst lua/%,%,$(wildcard lua/lray/*.lua lua/lray/*/*.lua))
DATA_FILES := library/lray.d.lua library/lray.testing.d.lua config.json

install: $(BUILD)/lray
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DATADIR)/library
	install -m 755 $(BUILD)/lray $(DESTDIR)$(BINDIR)/lray
	for f in $(LUA_FILES); do install -D -m 644 lua/$$f $(DESTDIR)$(LUADIR)/$$f || exit 1; done
	install -m 644 docs/lray.1 $(DESTDIR)$(MANDIR)/man1/lray.1
	for f in $(DATA_FILES); do install -m 644 types/$$f $(DESTDIR)$(DATADIR)/$$f || exit 1; done

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/lray $(DESTDIR)$(MANDIR)/man1/lray.1
	rm -f $(addprefix $(DESTDIR)$(LUADIR)/,$(LUA_FILES)) $(addprefix $(DESTDIR)$(DATADIR)/,$(DATA_FILES))
	rmdir $(addprefix $(DESTDIR)$(LUADIR)/,$(filter-out lray/,$(sort $(dir $(LUA_FILES)))) lray) \
	  $(DESTDIR)$(DATADIR)/library $(DESTDIR)$(DATADIR) 2>/dev/null || true

-include $(OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(wildcard $(BUILD)/fuzz/*.d)
