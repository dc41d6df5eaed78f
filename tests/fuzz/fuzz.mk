# tests/fuzz/fuzz.mk - libFuzzer targets for the parsers of outside bytes.
#
# Included by the main Makefile, or used alone: make -f tests/fuzz/fuzz.mk fuzz
#
#   make fuzz             build $(B)/fuzz/fuzz_idx, fuzz_model and fuzz_image
#   make fuzz-run         fuzz each target FUZZ_SECONDS (60) on a fresh copy of
#                         its seed corpus; fails on any crash, leak, UB or OOM
#   make fuzz-regress     run each target once over its seeds and the saved
#                         reproducers in tests/fuzz/regress/ (quick, for CI)
#   make fuzz-corpus      regenerate tests/fuzz/corpus/ with make_corpus
#
# FUZZ_NAMES=image (on the command line) restricts fuzz, fuzz-run and
# fuzz-regress to some targets: make fuzz-run FUZZ_NAMES=image
#
# Needs clang with its libFuzzer runtime (Debian: libclang-rt-14-dev for
# clang 14). The library sources are compiled here with the fuzzing and
# sanitizer instrumentation, apart from the normal objects.

B ?= build
LIB_SRC ?= $(sort $(wildcard lib/*.c))

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
# Extra libFuzzer flags for fuzz-run, e.g. FUZZ_FLAGS=-max_len=8192
FUZZ_FLAGS ?=
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS := -g -O1 -std=c99 -Wall -Wextra -Iinclude -Ilib $(FUZZ_SAN)
FUZZ_DIR := $(B)/fuzz
FUZZ_NAMES := idx model image
FUZZ_BINS := $(FUZZ_NAMES:%=$(FUZZ_DIR)/fuzz_%)
FUZZ_LIB_OBJ := $(LIB_SRC:lib/%.c=$(FUZZ_DIR)/obj/%.o)

.PHONY: fuzz fuzz-run fuzz-regress fuzz-corpus

fuzz: $(FUZZ_BINS)

$(FUZZ_DIR)/obj/%.o: lib/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BINS): $(FUZZ_DIR)/%: tests/fuzz/%.c $(FUZZ_LIB_OBJ)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MMD -MP $< $(FUZZ_LIB_OBJ) -o $@ -lm

# The corpus generator: plain build, straight from the library sources.
$(FUZZ_DIR)/make_corpus: tests/fuzz/make_corpus.c $(LIB_SRC)
	@mkdir -p $(@D)
	$(FUZZ_CC) -std=c99 -O1 -g -Wall -Wextra -Iinclude -Ilib $< $(LIB_SRC) -o $@ -lm

fuzz-corpus: $(FUZZ_DIR)/make_corpus
	rm -rf tests/fuzz/corpus/idx tests/fuzz/corpus/model tests/fuzz/corpus/image
	mkdir -p tests/fuzz/corpus/idx tests/fuzz/corpus/model tests/fuzz/corpus/image
	$(FUZZ_DIR)/make_corpus tests/fuzz/corpus

# Each target in turn (one fuzzing process at a time), on a fresh copy of
# its seeds; libFuzzer exits non-zero on a finding, which stops make. The
# input that failed is saved as $(FUZZ_DIR)/artifacts/<target>-crash-<sha1>
# (or leak-, oom-, timeout-).
fuzz-run: fuzz
	@set -e; for t in $(FUZZ_NAMES); do \
		rm -rf $(FUZZ_DIR)/corpus-$$t; \
		mkdir -p $(FUZZ_DIR)/corpus-$$t $(FUZZ_DIR)/artifacts; \
		cp tests/fuzz/corpus/$$t/* $(FUZZ_DIR)/corpus-$$t/; \
		echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
		$(FUZZ_DIR)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-dict=tests/fuzz/$$t.dict -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t- \
			$(FUZZ_FLAGS) $(FUZZ_DIR)/corpus-$$t; \
	done

# Runs every seed and reproducer once: fails while a saved bug is unfixed.
fuzz-regress: fuzz
	@set -e; for t in $(FUZZ_NAMES); do \
		echo "== fuzz_$$t over its seeds and reproducers"; \
		$(FUZZ_DIR)/fuzz_$$t $$(ls -d tests/fuzz/corpus/$$t/* tests/fuzz/regress/$$t-* 2>/dev/null); \
	done

-include $(wildcard $(FUZZ_DIR)/obj/*.d $(FUZZ_DIR)/*.d)
