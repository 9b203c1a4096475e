# loco: asynchronous Local-SGD training of small transformers on one multicore server.
#   make run     set-up, build, train on the embedded default config, show a sample
#   make test    set-up, build, run the whole test suite
#   make deps    install the Debian packages and fetch the corpus (idempotent)
#   make bench   the benchmarks in bench/ (see bench/README.md)
#   make sanitize  the test suite under ThreadSanitizer, then Address+UB sanitizers

SHELL    = /bin/bash
CC       = gcc
OPT      = -O3 -march=native
WARN     = -Wall -Wextra -Werror
CFLAGS   = -std=c11 $(OPT) -fopenmp-simd $(WARN) -g -pthread -D_GNU_SOURCE -Iinclude -MMD -MP \
           $(shell pkg-config --cflags openblas 2>/dev/null)
LDLIBS   = -lopenblas -lhwloc -linih -lz -lm -pthread
MALLOC   = -ljemalloc
BUILD    = build
# the config that `./loco train` uses without -c, compiled into the binary
DEFAULT_INI = configs/demo.ini

TEST_LIB = -lcriterion
TEST_RUNNER =

# sanitizer flavours: make SAN=thread | SAN=address,undefined (own build dir, no jemalloc)
ifneq ($(SAN),)
BUILD    = build/san-$(subst $(comma),-,$(SAN))
OPT      = -O1 -march=native -fno-omit-frame-pointer
CFLAGS  += -fsanitize=$(SAN) -fno-sanitize-recover=all -DLOCO_SANITIZE
LDFLAGS += -fsanitize=$(SAN)
MALLOC   =
endif
comma := ,
# Criterion aborts at start-up under TSan (Snaipe/Criterion#274): the same tests then
# build against a small stand-in runner in tests/shim
ifeq ($(SAN),thread)
TEST_LIB =
TEST_RUNNER = $(BUILD)/tests/shim/runner.o
$(BUILD)/tests/%.o: CFLAGS += -Itests/shim -Wno-format-zero-length
endif

# test_main runs the binary of this build (under sanitizers, build/san-*/loco)
$(BUILD)/tests/test_main.o: CFLAGS += -DLOCO_BIN='"./$(LOCO)"'

SRC      = $(wildcard src/*.c)
LIB_OBJ  = $(patsubst src/%.c,$(BUILD)/src/%.o,$(filter-out src/main.c,$(SRC))) $(BUILD)/default_ini.o
TEST_OBJ = $(patsubst tests/%.c,$(BUILD)/tests/%.o,$(wildcard tests/*.c))
BENCH_OBJ = $(patsubst bench/%.c,$(BUILD)/bench/%.o,$(wildcard bench/*.c))
LOCO     = $(if $(SAN),$(BUILD)/loco,loco)

.PHONY: all deps run test check bench sanitize clean
all: $(LOCO)

deps:
	@scripts/deps.sh
	@scripts/get-corpus.sh

$(LOCO): $(BUILD)/src/main.o $(LIB_OBJ) $(BENCH_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(MALLOC)

$(BUILD)/loco_tests: $(TEST_OBJ) $(LIB_OBJ) $(TEST_RUNNER)
	$(CC) $(LDFLAGS) -o $@ $^ $(TEST_LIB) $(LDLIBS) $(MALLOC)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/default_ini.c: $(DEFAULT_INI)
	@mkdir -p $(dir $@)
	{ echo '/* generated from $< by the Makefile */'; \
	  echo 'const char loco_default_ini_name[] = "$<";'; \
	  echo 'const char loco_default_ini[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/.*/  "&\\n"/' $<; echo ';'; } > $@

$(BUILD)/default_ini.o: $(BUILD)/default_ini.c
	$(CC) $(CFLAGS) -c -o $@ $<

run:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory all
	./loco train --out runs/demo
	./loco sample --model runs/demo/model.bin --prompt "The " --tokens 400

test:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory check

# the suite without the set-up step; tests find ./loco and data/ from the root
check: $(LOCO) $(BUILD)/loco_tests
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp $(BUILD)/loco_tests --jobs 2

bench: all
	./loco bench step -c configs/small.ini
	./loco bench step -c configs/paper-20m.ini
	./loco bench apply -c configs/small.ini
	./loco bench scale -c configs/small.ini

# a sanitizer report fails the target even where the test itself passed
sanitize:
	@$(MAKE) --no-print-directory deps
	@for san in thread address,undefined; do \
	  echo "== make check under -fsanitize=$$san"; \
	  $(MAKE) --no-print-directory SAN=$$san check 2>&1 | tee build/sanitize.log; \
	  [ $${PIPESTATUS[0]} -eq 0 ] || exit 1; \
	  ! grep -qE '^(==[0-9]+==ERROR|WARNING: ThreadSanitizer)|runtime error:' build/sanitize.log || \
	    { echo "== sanitizer reports above (build/sanitize.log)"; exit 1; }; \
	done

clean:
	rm -rf build loco

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
