# loco: asynchronous Local-SGD training of small transformers on one multicore server.
#   make run     set-up, build, train on the embedded default config, show a sample, draw
#                its curve and timeline
#   make test    set-up, build, run the whole test suite, and its concurrency tests under
#                ThreadSanitizer
#   make deps    install the Debian packages and fetch the corpus (idempotent)
#   make bench   the benchmarks in bench/ (see bench/README.md)
#   make sanitize  the test suite under ThreadSanitizer, then Address+UB sanitizers
#   make fuzz    set-up (clang), then each libFuzzer target in tests/fuzz for FUZZ_SECONDS

SHELL    = /bin/bash
CC       = gcc
# CFLAGS and LDFLAGS are the user's (make CFLAGS=-O0, make CC=clang); what loco needs to
# build at all is in LOCO_CFLAGS and comes first
CFLAGS   = -O3 -march=native -g
WARN     = -Wall -Wextra -Werror
# clang 14 cannot vectorise the float max reductions that gcc does (without fast-math) and
# says so as a warning: a missed optimisation in that compiler, not an error in loco
ifneq ($(findstring clang,$(CC)),)
WARN    += -Wno-pass-failed
endif
# -fno-math-errno: loco never reads errno after a math call, and sqrtf's errno write is
# what kept AdamW's loop from vectorising (18 -> 7 ms per paper-20m step)
LOCO_CFLAGS = -std=c11 -fopenmp-simd -fno-math-errno $(WARN) -pthread -D_GNU_SOURCE -Iinclude -MMD -MP \
           $(shell pkg-config --cflags openblas 2>/dev/null)
LOCO_LDFLAGS = -pthread
LDLIBS   = -lopenblas -ldnnl -lgomp -lhwloc -linih -lcjson -lz -lm -pthread
MALLOC   = -ljemalloc
BUILD    = build
# the config that `./loco train` uses without -c, compiled into the binary
DEFAULT_INI = configs/demo.ini

TEST_LIB = -lcriterion
TEST_RUNNER =

# sanitizer flavours: make SAN=thread | SAN=address,undefined (own build dir, no jemalloc)
ifneq ($(SAN),)
BUILD    = build/san-$(subst $(comma),-,$(SAN))
CFLAGS   = -O1 -g -march=native -fno-omit-frame-pointer
LOCO_CFLAGS += -fsanitize=$(SAN) -fno-sanitize-recover=all -DLOCO_SANITIZE
LOCO_LDFLAGS += -fsanitize=$(SAN)
MALLOC   =
endif
comma := ,
# Criterion aborts at start-up under TSan (Snaipe/Criterion#274): the same tests then
# build against a small stand-in runner in tests/shim
ifeq ($(SAN),thread)
TEST_LIB =
TEST_RUNNER = $(BUILD)/tests/shim/runner.o
$(BUILD)/tests/%.o: LOCO_CFLAGS += -Itests/shim -Wno-format-zero-length
endif

# libFuzzer targets (make fuzz): tests/fuzz/fuzz_NAME.c, seeds in tests/fuzz/NAME/. Built
# by clang (gcc has no libFuzzer) with Address+UB sanitizers, in build/fuzz, no jemalloc
FUZZ_CC  = clang-14
FUZZ_SECONDS = 60
FUZZ_TARGETS = $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
ifneq ($(FUZZ),)
BUILD    = build/fuzz
CFLAGS   = -O1 -g -fno-omit-frame-pointer
LOCO_CFLAGS += -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
LOCO_LDFLAGS += -fsanitize=fuzzer,address,undefined
MALLOC   =
endif

# the tests that run the binary of this build (tests/cli.h; under sanitizers,
# build/san-*/loco)
$(BUILD)/tests/test_main.o $(BUILD)/tests/test_runlock.o $(BUILD)/tests/test_sweep.o: \
  LOCO_CFLAGS += -DLOCO_BIN='"./$(LOCO)"'

SRC      = $(wildcard src/*.c)
LIB_OBJ  = $(patsubst src/%.c,$(BUILD)/src/%.o,$(filter-out src/main.c,$(SRC))) $(BUILD)/default_ini.o \
           $(BUILD)/commit.o
TEST_OBJ = $(patsubst tests/%.c,$(BUILD)/tests/%.o,$(wildcard tests/*.c))
BENCH_OBJ = $(patsubst bench/%.c,$(BUILD)/bench/%.o,$(wildcard bench/*.c))
LOCO     = $(if $(SAN),$(BUILD)/loco,loco)

.PHONY: all deps run test check check-threads bench soak sanitize fuzz fuzz-build fuzz-seeds clean
all: $(LOCO)

deps:
	@scripts/deps.sh
	@scripts/get-corpus.sh

$(LOCO): $(BUILD)/src/main.o $(LIB_OBJ) $(BENCH_OBJ)
	$(CC) $(LOCO_LDFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(MALLOC)

$(BUILD)/loco_tests: $(TEST_OBJ) $(LIB_OBJ) $(TEST_RUNNER)
	$(CC) $(LOCO_LDFLAGS) $(LDFLAGS) -o $@ $^ $(TEST_LIB) $(LDLIBS) $(MALLOC)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(LOCO_CFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/default_ini.c: $(DEFAULT_INI)
	@mkdir -p $(dir $@)
	{ echo '/* generated from $< by the Makefile */'; \
	  echo 'const char loco_default_ini_name[] = "$<";'; \
	  echo 'const char loco_default_ini[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/.*/  "&\\n"/' $<; echo ';'; } > $@

$(BUILD)/default_ini.o: $(BUILD)/default_ini.c
	$(CC) $(LOCO_CFLAGS) $(CFLAGS) -c -o $@ $<

# the commit the binary was built from, for summary.json and results pages ("-dirty" with
# uncommitted changes); rewritten only when it changes, so nothing else rebuilds
LOCO_COMMIT = $(shell git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)
$(BUILD)/commit.c: FORCE
	@mkdir -p $(dir $@)
	@echo 'const char loco_commit[] = "$(LOCO_COMMIT)";' | cmp -s - $@ || \
	  echo 'const char loco_commit[] = "$(LOCO_COMMIT)";' > $@

$(BUILD)/commit.o: $(BUILD)/commit.c
	$(CC) $(LOCO_CFLAGS) $(CFLAGS) -c -o $@ $<
FORCE:

run:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory all
	./loco train --out runs/demo
	./loco sample --model runs/demo/model.bin --prompt "The " --tokens 400
	./loco plot runs/demo --x time --out runs/demo/curve.png
	./loco plot --timeline runs/demo --out runs/demo/timeline.png
	@echo "pictures: runs/demo/curve.png (validation perplexity over time), runs/demo/timeline.png (the workers' rounds)"

test:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory check
	@$(MAKE) --no-print-directory SAN=thread check-threads

# the suite without the set-up step; tests find ./loco and data/ from the root. The fuzz
# targets are compiled too (with this compiler, not run) so they never fall behind the API
check: $(LOCO) $(BUILD)/loco_tests $(patsubst %,$(BUILD)/tests/fuzz/fuzz_%.o,$(FUZZ_TARGETS))
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp $(BUILD)/loco_tests --jobs 2

# the tests whose threads really race, under ThreadSanitizer (part of make test: about a
# minute and a half on 2 cores, build included; make sanitize runs everything)
check-threads: $(LOCO) $(BUILD)/loco_tests
	$(BUILD)/loco_tests --filter '@(globalbuf|protocol|server|clock|engine)/*'

bench: all
	./loco bench step -c configs/small.ini
	./loco bench step -c configs/paper-20m.ini
	./loco bench apply -c configs/small.ini
	./loco bench scale -c configs/small.ini

# a long real-clock run under faults, injections and checkpoints (5 minutes; SOAK_S=N)
soak: all
	./loco bench soak --seconds $(or $(SOAK_S),300)

# a sanitizer report fails the target even where the test itself passed
sanitize:
	@$(MAKE) --no-print-directory deps
	@mkdir -p build
	@for san in thread address,undefined; do \
	  echo "== make check under -fsanitize=$$san"; \
	  $(MAKE) --no-print-directory SAN=$$san check 2>&1 | tee build/sanitize.log; \
	  [ $${PIPESTATUS[0]} -eq 0 ] || exit 1; \
	  ! grep -qE '^(==[0-9]+==ERROR|WARNING: ThreadSanitizer)|runtime error:' build/sanitize.log || \
	    { echo "== sanitizer reports above (build/sanitize.log)"; exit 1; }; \
	done

# the fuzz targets for FUZZ_SECONDS each (default 60; FUZZ_TARGETS=NAME for one); a crash,
# leak or timeout fails the target and names the input (scripts/fuzz.sh)
fuzz:
	@scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory FUZZ=1 CC=$(FUZZ_CC) fuzz-build
	scripts/fuzz.sh build/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# (FUZZ=1 only: make fuzz calls it with clang)
ifneq ($(FUZZ),)
fuzz-build: $(patsubst %,$(BUILD)/fuzz_%,$(FUZZ_TARGETS))
.SECONDARY: $(patsubst %,$(BUILD)/tests/fuzz/fuzz_%.o,$(FUZZ_TARGETS))

$(BUILD)/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(LIB_OBJ)
	$(CC) $(LOCO_LDFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)
endif

# writes the generated seeds (shards, text, model files) into tests/fuzz/*/; run once
fuzz-seeds: $(BUILD)/tests/fuzz/seeds
	$< tests/fuzz

$(BUILD)/tests/fuzz/seeds: $(BUILD)/tests/fuzz/seeds.o $(LIB_OBJ)
	$(CC) $(LOCO_LDFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

clean:
	rm -rf build loco

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
