# lray build. `make` builds build/lray; see README.md for the two entry points.
BUILD   ?= build
CC      ?= cc
WERROR  ?= $(if $(CI),1,0)
CFLAGS  ?= -O2 -g
LR_CFLAGS = -std=gnu11 -Wall -Wextra -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wvla -Icore -MMD -MP \
            -I/usr/include/luajit-2.1 \
            $(if $(filter 1,$(WERROR)),-Werror) $(SANFLAGS)
LIBS    = -lluajit-5.1 -luv -lxxhash -ledit -lrt -lpthread -ldl -lm
LDFLAGS += -Wl,-E $(SANFLAGS)

SRCS     := $(filter-out core/test/%,$(wildcard core/*/*.c))
OBJS     := $(SRCS:%.c=$(BUILD)/%.o)
LIB_OBJS := $(filter-out $(BUILD)/core/main/%,$(OBJS))
TEST_SRCS:= $(wildcard core/test/*.c)
TEST_OBJS:= $(TEST_SRCS:%.c=$(BUILD)/%.o)
STAMP    := $(BUILD)/.deps-ok

.PHONY: all deps run test test-c spec asan clean examples lint
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
	LRAY_BIN=$(abspath $(BUILD)/lray) busted --lua=$(abspath $(BUILD)/lray) spec

# Lua globals and unused code; C include rules.
lint: $(STAMP)
	luacheck --no-color -q lua spec examples

test: lint test-c spec

asan:
	LSAN_OPTIONS=suppressions=$(abspath scripts/lsan.supp) $(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fno-omit-frame-pointer" \
	  SANFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" test

clean:
	rm -rf build build-asan

-include $(OBJS:.o=.d) $(TEST_OBJS:.o=.d)
