# libcvae - GNU make. Everything built goes to build/.
#
#   make                  library (static + shared), tests, examples and the benchmark
#   make check            build and run every test
#   make deps             install what building and testing need, when missing
#   make NATIVE=1         add -march=native (the default binary runs anywhere)
#   make mpi              the MPI trainer build/bin/cvae-train-mpi (needs mpicc:
#                         `make deps`); `make check` runs its tests when mpicc
#                         and mpirun are there
#   make bench            speed table (training, layers, multiply, sampling;
#                         tests/bench/cvae-bench.c, built as build/bin/cvae-bench)
#   make abi-check        the shared library against lib/libcvae.abi
#   make fuzz-run         fuzz the file loaders (tests/fuzz/README.md)
#   make SANITIZE=1       build everything with AddressSanitizer + UBSan
#   make TSAN=1           build everything with ThreadSanitizer (without OpenMP)
#   make OPENMP=0         build without OpenMP (every call on the caller's thread;
#                         the default uses OpenMP when the compiler has it)
#   make install PREFIX=/usr/local DESTDIR=   /   make uninstall   /   make clean

B := build

# `make clean X ...`: make decides once per run what is up to date, so
# cleaning and building in the same run would trust objects clean removed.
# Clean first, then build the other goals in a fresh make (command-line
# variables such as SANITIZE=1 CC=clang pass down).
CLEAN_THEN := $(filter-out clean,$(MAKECMDGOALS))
ifneq ($(and $(filter clean,$(MAKECMDGOALS)),$(CLEAN_THEN)),)
.PHONY: clean $(CLEAN_THEN)
clean:
	rm -rf $(B)
	@$(MAKE) --no-print-directory $(CLEAN_THEN)
$(CLEAN_THEN): clean
	@:
else

# The version lives in include/cvae.h only; read it from there.
version_field = $(shell sed -n 's/^\#define CVAE_VERSION_$(1) *\([0-9][0-9]*\).*/\1/p' include/cvae.h)
MAJOR := $(call version_field,MAJOR)
MINOR := $(call version_field,MINOR)
PATCH := $(call version_field,PATCH)
VERSION := $(MAJOR).$(MINOR).$(PATCH)

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR ?=

# A C++ compiler from the same family as CC, for the header's C++ check.
ifeq ($(origin CXX),default)
  ifneq ($(findstring clang,$(CC)),)
    CXX := clang++
  else
    CXX := g++
  endif
endif

WARNINGS := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla
OPT ?= -O2
ifeq ($(NATIVE),1)
  OPT += -march=native
endif
ifeq ($(SANITIZE),1)
  OPT := -O1 -g -fno-omit-frame-pointer
  SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all
endif
# ThreadSanitizer: the library's own threads are OpenMP's, whose runtime is
# not instrumented (it would report its own barriers), so TSAN=1 builds
# without OpenMP and checks what callers' threads do (tests/test_threads.c).
ifeq ($(TSAN),1)
  OPT := -O1 -g -fno-omit-frame-pointer
  SANFLAGS := -fsanitize=thread
  OPENMP := 0
endif
# Threads inside a call come from OpenMP pragmas; without them the code is
# the same, serial. By default OpenMP is used when the compiler can build
# and link an OpenMP program (clang needs libomp-dev: `make deps`).
ifeq ($(OPENMP),)
  OPENMP := $(shell printf '\043include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n' | \
	$(CC) -fopenmp -x c - -o /dev/null >/dev/null 2>&1 && echo 1 || echo 0)
endif
ifeq ($(OPENMP),1)
  OMPFLAGS := -fopenmp
endif
BASE_CFLAGS := -std=c99 $(WARNINGS) $(OPT) $(SANFLAGS) $(OMPFLAGS) -Iinclude -Ilib $(CFLAGS)
LIB_CFLAGS := $(BASE_CFLAGS) -fPIC -fvisibility=hidden
# The library's element-wise loops are written for the vectoriser, which
# gcc 12 runs at -O2 only on loops of known length: build the library at -O3
# (no fast-math: results stay exactly as the C says). OPT=... overrides.
# -fno-math-errno lets sqrtf become one instruction: the library never reads
# errno from libm.
ifeq ($(origin OPT)$(SANITIZE),file)
  LIB_CFLAGS := $(subst -O2,-O3,$(LIB_CFLAGS))
endif
LIB_CFLAGS += -fno-math-errno
# Functions start on a 64-byte line, so that a change elsewhere in the
# library cannot move a hot loop across a fetch boundary: without it, adding
# pack.c shifted im2col's loop by 16 bytes and made it 40 % slower (issue 14,
# docs/PERFORMANCE.md 0.9.1).
LIB_CFLAGS += -falign-functions=64
BASE_LDFLAGS := $(SANFLAGS) $(OMPFLAGS) $(LDFLAGS)
LIBS := -lm

SONAME := libcvae.so.$(MAJOR)
SHARED := $(B)/libcvae.so.$(VERSION)
STATIC := $(B)/libcvae.a

LIB_SRC := $(sort $(wildcard lib/*.c))
LIB_OBJ := $(LIB_SRC:lib/%.c=$(B)/obj/lib/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(B)/tests/%)
# Helpers shared by the tests (tests/testutil.c: no test_ prefix, so not a test program).
TEST_COMMON_OBJ := $(B)/obj/tests/testutil.o
TEST_WRAP_OBJ := $(B)/obj/tests/testwrap.o
EXAMPLE_SRC := $(sort $(wildcard examples/*.c))
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.c=$(B)/bin/%)
EXAMPLE_COMMON := $(sort $(wildcard examples/common/*.c))
EXAMPLE_COMMON_OBJ := $(EXAMPLE_COMMON:%.c=$(B)/obj/%.o)
# The benchmark is a development tool, not an example: it times the multiply's
# variants and the layers' kernels through lib/cvae_internal.h. Built beside
# the programs, never installed.
BENCH_BIN := $(B)/bin/cvae-bench

# Rebuild everything when the compiler or flags change (e.g. SANITIZE=1).
FLAGS_STAMP := $(B)/flags.stamp
FLAGS_NOW := $(CC) $(CXX) $(LIB_CFLAGS) $(BASE_CFLAGS) $(BASE_LDFLAGS)
$(shell mkdir -p $(B) && (printf '%s\n' '$(FLAGS_NOW)' | cmp -s - $(FLAGS_STAMP) || printf '%s\n' '$(FLAGS_NOW)' > $(FLAGS_STAMP)))

.PHONY: all lib tests examples check deps install uninstall clean demo data
.DEFAULT_GOAL := all

all: lib tests examples $(BENCH_BIN)
lib: $(STATIC) $(SHARED) $(B)/$(SONAME) $(B)/libcvae.so
tests: $(TEST_BIN)
examples: $(EXAMPLE_BIN)

$(B)/obj/lib/%.o: lib/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) -MMD -MP -c $< -o $@

# The multiply's tile may fuse multiply-add into FMA where the CPU has it
# (gcc disables contraction under -std=c99; clang already contracts).
$(B)/obj/lib/gemm.o: LIB_CFLAGS += -ffp-contract=fast

$(STATIC): $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(SHARED): $(LIB_OBJ) lib/libcvae.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=lib/libcvae.map \
		$(BASE_LDFLAGS) -o $@ $(LIB_OBJ) $(LIBS)

$(B)/$(SONAME): $(SHARED)
	ln -sf $(notdir $(SHARED)) $@

$(B)/libcvae.so: $(B)/$(SONAME)
	ln -sf $(SONAME) $@

# Tests link the static library, so they may also call internal cvi_ kernels.
$(TEST_COMMON_OBJ) $(TEST_WRAP_OBJ): $(B)/obj/tests/%.o: tests/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -MMD -MP -c $< -o $@

.SECONDARY: $(TEST_COMMON_OBJ) $(TEST_WRAP_OBJ)
$(B)/tests/%: tests/%.c $(TEST_COMMON_OBJ) $(STATIC) $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -MMD -MP $< -o $@ $(BASE_LDFLAGS) $(TEST_EXTRA_OBJ) $(TEST_COMMON_OBJ) $(STATIC) -lcmocka $(LIBS)

# test_threads runs models from two threads of its own.
$(B)/tests/test_threads: BASE_LDFLAGS += -pthread

# test_noalloc and test_oom count the library's own calls to malloc and
# friends through the linker.
WRAP_MALLOC := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free
$(B)/tests/test_noalloc $(B)/tests/test_oom: BASE_LDFLAGS += $(WRAP_MALLOC)
$(B)/tests/test_noalloc $(B)/tests/test_oom: TEST_EXTRA_OBJ = $(TEST_WRAP_OBJ)
$(B)/tests/test_noalloc $(B)/tests/test_oom: $(TEST_WRAP_OBJ)

# test_classify tests the examples' classifier module (examples/common/classifier.c).
$(B)/tests/test_classify: TEST_EXTRA_OBJ = $(B)/obj/examples/common/classifier.o
$(B)/tests/test_classify: BASE_CFLAGS += -Iexamples/common
$(B)/tests/test_classify: $(B)/obj/examples/common/classifier.o

# test_knn tests the examples' neighbour vote (examples/common/knn.c).
$(B)/tests/test_knn: TEST_EXTRA_OBJ = $(B)/obj/examples/common/knn.o
$(B)/tests/test_knn: BASE_CFLAGS += -Iexamples/common
$(B)/tests/test_knn: $(B)/obj/examples/common/knn.o

# test_tune tests the examples' hyperparameter search (examples/common/tune.c).
$(B)/tests/test_tune: TEST_EXTRA_OBJ = $(B)/obj/examples/common/tune.o
$(B)/tests/test_tune: BASE_CFLAGS += -Iexamples/common
$(B)/tests/test_tune: $(B)/obj/examples/common/tune.o

# tests/make_shapes.c: the synthetic colour set (CIFAR-10 or netpbm format).
$(B)/tools/make_shapes: tests/make_shapes.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $< -o $@ $(BASE_LDFLAGS) $(LIBS)

# tests/header_api.c: the header's CVAE_API functions, for the export checks.
$(B)/tools/header_api: tests/header_api.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $< -o $@ $(BASE_LDFLAGS)

# Examples are linked statically: self-contained programs, installable as is.
$(B)/obj/examples/common/%.o: examples/common/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -MMD -MP -c $< -o $@

.SECONDARY: $(EXAMPLE_COMMON_OBJ)
$(B)/bin/%: examples/%.c $(EXAMPLE_COMMON_OBJ) $(STATIC) $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -Iexamples/common -MMD -MP $< -o $@ $(BASE_LDFLAGS) \
		$(EXAMPLE_COMMON_OBJ) $(STATIC) $(LIBS)

# The benchmark links like an example (the static library holds the cvi_
# internals it calls) and shares the examples' helpers.
$(BENCH_BIN): tests/bench/cvae-bench.c $(EXAMPLE_COMMON_OBJ) $(STATIC) $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -Iexamples/common -MMD -MP $< -o $@ $(BASE_LDFLAGS) \
		$(EXAMPLE_COMMON_OBJ) $(STATIC) $(LIBS)

-include $(wildcard $(B)/obj/lib/*.d $(B)/obj/examples/common/*.d $(B)/obj/tests/*.d $(B)/tests/*.d \
	$(B)/bin/*.d)

# MNIST in data/mnist/: from MNIST_DIR when given or when ../shared/data/mnist
# exists (gzipped files are decompressed), otherwise downloaded and checked.
SHARED_MNIST := ../shared/data/mnist
MNIST_DIR ?= $(if $(wildcard $(SHARED_MNIST)/t10k-images-idx3-ubyte*),$(SHARED_MNIST))
data:
	sh examples/get-mnist.sh data/mnist $(MNIST_DIR)

# The main job: build, get the data, train the seed VAE for 10 epochs, then
# write samples, reconstructions, interpolations and the loss curve to demo/.
# DEMO_SEED is cvae-train's default seed, that of the README's quality figure.
DEMO_EPOCHS ?= 10
DEMO_SEED ?= 1
demo: examples data
	@mkdir -p demo
	rm -f demo/loss.csv demo/model.cvae
	$(B)/bin/cvae-train --data data/mnist --epochs $(DEMO_EPOCHS) --seed $(DEMO_SEED) \
		--out demo/model.cvae --log demo/loss.csv --plot demo/loss.svg
	$(B)/bin/cvae-generate --model demo/model.cvae --count 64 --out demo/samples.png
	$(B)/bin/cvae-reconstruct --model demo/model.cvae --data data/mnist --out demo/recon.png
	$(B)/bin/cvae-interpolate --model demo/model.cvae --data data/mnist --out demo/interp.png
	@echo "demo: pictures in demo/ (samples.png recon.png interp.png loss.svg)"

# Colour: the synthetic shapes set (tests/make_shapes.c, CIFAR-10's binary
# format, 3 x 32 x 32) in data/shapes, the preset trained on it, and sample
# and reconstruction grids in demo-rgb/. About 4 minutes on two cores.
DEMO_RGB_EPOCHS ?= 30
DEMO_RGB_FLAGS ?=
.PHONY: demo-rgb
demo-rgb: examples $(B)/tools/make_shapes
	@mkdir -p demo-rgb
	$(B)/tools/make_shapes --out data/shapes --train 10000 --test 2000 --seed 1
	rm -f demo-rgb/loss.csv demo-rgb/model.cvae
	$(B)/bin/cvae-train --format cifar10 --data data/shapes --epochs $(DEMO_RGB_EPOCHS) \
		$(DEMO_RGB_FLAGS) --out demo-rgb/model.cvae --log demo-rgb/loss.csv \
		--plot demo-rgb/loss.svg
	$(B)/bin/cvae-generate --model demo-rgb/model.cvae --count 64 --scale 3 \
		--out demo-rgb/samples.png
	$(B)/bin/cvae-reconstruct --format cifar10 --model demo-rgb/model.cvae --data data/shapes \
		--count 32 --scale 3 --out demo-rgb/recon.png
	$(B)/bin/cvae-interpolate --format cifar10 --model demo-rgb/model.cvae --data data/shapes \
		--scale 3 --out demo-rgb/interp.png
	@echo "demo-rgb: pictures in demo-rgb/ (samples.png recon.png interp.png loss.svg)"

# --------------------------------------------------------------- evaluate

# The figures of docs/EVALUATION.md, from scratch, into eval/: the digit
# classifier, the seed model and its conditional twin (beta 4) trained 30 epochs (with
# a copy at 10), and cvae-eval on each (text and JSON). About half an hour on
# two cores; EVAL_IWAE_IMAGES=N bounds the IWAE bound to N test digits.
EVAL_EPOCHS ?= 30
EVAL_IWAE ?= 1000
EVAL_IWAE_IMAGES ?= 10000
.PHONY: evaluate
evaluate: examples data
	@mkdir -p eval
	$(B)/bin/cvae-classify train --data data/mnist --out eval/classifier.bin
	@set -e; for kind in plain conditional; do \
		flag=; [ $$kind = conditional ] && flag="--conditional"; \
		rm -f eval/$$kind.cvae eval/$$kind.csv; \
		$(B)/bin/cvae-train --data data/mnist --epochs 10 $$flag --out eval/$$kind.cvae \
			--log eval/$$kind.csv; \
		cp eval/$$kind.cvae eval/$$kind-10.cvae; \
		$(B)/bin/cvae-train --data data/mnist --epochs $(EVAL_EPOCHS) $$flag \
			--resume eval/$$kind.cvae --out eval/$$kind.cvae --log eval/$$kind.csv; \
		for m in $$kind-10 $$kind; do \
			$(B)/bin/cvae-eval --model eval/$$m.cvae --data data/mnist \
				--classifier eval/classifier.bin --iwae $(EVAL_IWAE) \
				--iwae-images $(EVAL_IWAE_IMAGES) --json > eval/$$m.json; \
			cat eval/$$m.json; \
		done; \
	done

# ------------------------------------------------------------------ bench

# The speed table of docs/PERFORMANCE.md. Run it on a quiet machine: no
# build, test or other heavy process beside it. BENCH_FLAGS=--quick for a
# smoke run; see build/bin/cvae-bench --help (source: tests/bench/cvae-bench.c).
BENCH_FLAGS ?=
.PHONY: bench
bench: $(BENCH_BIN)
	$(BENCH_BIN) $(BENCH_FLAGS)

# -------------------------------------------------------------------- MPI

# The data-parallel trainer (examples/mpi/, apart so that the plain build,
# which globs examples/*.c, never needs MPI). Open MPI's mpicc wraps $(CC)
# (OMPI_CC); the library itself knows nothing of MPI.
MPICC ?= mpicc
MPI_BIN := $(B)/bin/cvae-train-mpi
.PHONY: mpi
mpi: $(MPI_BIN)
$(MPI_BIN): examples/mpi/cvae-train-mpi.c $(EXAMPLE_COMMON_OBJ) $(STATIC) $(FLAGS_STAMP)
	@mkdir -p $(@D)
	OMPI_CC="$(CC)" $(MPICC) $(BASE_CFLAGS) -Iexamples/common -MMD -MP $< -o $@ $(BASE_LDFLAGS) \
		$(EXAMPLE_COMMON_OBJ) $(STATIC) $(LIBS)

# -------------------------------------------------------------------- ABI

# lib/libcvae.abi is abidw's description of the last release's shared
# library (Debian: abigail-tools). abi-check builds the library with debug
# information in $(B)/abi and compares: a removed or changed function or
# public type fails; added functions are fine. abi-dump rewrites the file
# when a release is cut (docs/ABI.md).
ABI_B := $(B)/abi
ABI_LIB := $(ABI_B)/libcvae.so.$(VERSION)
ABI_HEADERS := --headers-dir1 include --headers-dir2 include
.PHONY: abi-check abi-dump
abi-check:
	@$(MAKE) --no-print-directory B=$(ABI_B) CFLAGS=-g lib
	abidiff --no-added-syms $(ABI_HEADERS) lib/libcvae.abi $(ABI_LIB) || \
		{ echo "abi-check: the ABI of lib/libcvae.abi changed (see above)" >&2; exit 1; }
	@echo "abi-check: nothing removed or changed since lib/libcvae.abi"
	@abidiff $(ABI_HEADERS) lib/libcvae.abi $(ABI_LIB) | sed -n 's/^ *\[A\] /abi-check: added: /p' || true
abi-dump:
	@$(MAKE) --no-print-directory B=$(ABI_B) CFLAGS=-g lib
	abidw --headers-dir include --no-corpus-path $(ABI_LIB) --out-file lib/libcvae.abi

# ------------------------------------------------------------------- fuzz

# libFuzzer targets for the IDX and model loaders (clang and its libFuzzer
# runtime: make fuzz / fuzz-run / fuzz-regress; see tests/fuzz/README.md).
include tests/fuzz/fuzz.mk

# ------------------------------------------------------------------ checks

# Tests that train on real digits use data/mnist when it exists; fetch it
# first when the shared copy is at hand (they skip themselves otherwise).
check: all $(B)/tools/header_api $(if $(MNIST_DIR),data)
	@set -e; for t in $(TEST_BIN); do echo "== $$t"; $$t; done
	@echo "== header compiles alone as C99 and as C++"
	$(CC) -std=c99 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -x c include/cvae.h
	$(CXX) -std=c++11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -x c++ include/cvae.h
	@echo "== shared library exports, SONAME and version"
	sh tests/check_library.sh $(B) $(VERSION)
	@echo "== programs refuse damaged data sets"
	sh tests/check_programs.sh $(B)
	@echo "== peak memory of cvae-train on MNIST"
	@if [ ! -f data/mnist/train-images-idx3-ubyte ]; then echo "check: no data/mnist: memory check skipped"; \
	elif [ -n "$(SANFLAGS)" ]; then echo "check: sanitizer build: memory check skipped"; \
	else sh tests/check_memory.sh $(B) data/mnist; fi
	@echo "== the multiply's register tile, as compiled"
	sh tests/check_tile.sh $(B)/obj/lib/gemm.o "$(SANFLAGS)" "$(OPT)"
	@echo "== the export checks themselves; every header function through the shared library"
	sh tests/check_exports.sh $(B) "$(CC)" "$(BASE_LDFLAGS)"
	@echo "== data-parallel training over MPI"
	@if ! command -v $(MPICC) >/dev/null 2>&1 || ! command -v mpirun >/dev/null 2>&1; then \
		echo "check: no mpicc/mpirun: MPI tests skipped (make deps installs Open MPI)"; \
	elif [ -n "$(SANFLAGS)" ]; then echo "check: sanitizer build: MPI tests skipped (Open MPI is not instrumented; test_shard covers the library's side)"; \
	else $(MAKE) --no-print-directory mpi && sh tests/check_mpi.sh $(B); fi
	@echo "== install, pkg-config client, uninstall"
	sh tests/check_install.sh "$(MAKE)" "$(CC)" "$(SANFLAGS)"
	@echo "== all checks passed"

# Every test program under valgrind's memcheck: any error, and any block
# definitely, indirectly or possibly lost at exit, fails. Built apart in
# $(VALGRIND_B) without OpenMP (its runtime keeps thread pools alive) and with
# the portable multiply only (valgrind has no AVX-512 and runs FMA through
# slow helpers). CVAE_TEST_VALGRIND=1 tells the tests to skip the children
# they fork under resource limits and to shrink long runs (tests/testutil.h).
VALGRIND_B := $(B)/valgrind
VALGRIND_RUN := valgrind -q --error-exitcode=99 --leak-check=full \
	--errors-for-leak-kinds=definite,indirect,possible \
	--show-leak-kinds=definite,indirect,possible
.PHONY: valgrind
valgrind: $(if $(MNIST_DIR),data)
	@$(MAKE) --no-print-directory B=$(VALGRIND_B) OPENMP=0 CFLAGS="-g -DCVAE_NO_DISPATCH" tests
	@set -e; for t in $(TEST_SRC:tests/%.c=$(VALGRIND_B)/tests/%); do \
		echo "== valgrind $$t"; CVAE_TEST_VALGRIND=1 $(VALGRIND_RUN) $$t; done
	@echo "== valgrind: no errors, no leaks"

# Installs what building and testing need, where it is missing.
DEPS_DEBIAN := build-essential pkg-config libcmocka-dev clang libomp-dev abigail-tools libclang-rt-dev valgrind \
	libopenmpi-dev openmpi-bin
deps:
	@missing=""; \
	command -v $(firstword $(CC)) >/dev/null 2>&1 || missing="$$missing build-essential"; \
	command -v g++ >/dev/null 2>&1 || missing="$$missing g++"; \
	command -v pkg-config >/dev/null 2>&1 || missing="$$missing pkg-config"; \
	command -v clang >/dev/null 2>&1 || missing="$$missing clang"; \
	command -v nm >/dev/null 2>&1 || missing="$$missing binutils"; \
	command -v abidiff >/dev/null 2>&1 || missing="$$missing abigail-tools"; \
	command -v valgrind >/dev/null 2>&1 || missing="$$missing valgrind"; \
	command -v mpicc >/dev/null 2>&1 || missing="$$missing libopenmpi-dev"; \
	command -v mpirun >/dev/null 2>&1 || missing="$$missing openmpi-bin"; \
	printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)\n{ (void)d; (void)n; return 0; }\n' \
		| clang -fsanitize=fuzzer -x c - -o /dev/null >/dev/null 2>&1 || missing="$$missing libclang-rt-dev"; \
	printf '#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n' \
		| clang -fopenmp -x c - -o /dev/null >/dev/null 2>&1 || missing="$$missing libomp-dev"; \
	printf '#include <stdarg.h>\n#include <stddef.h>\n#include <setjmp.h>\n#include <stdint.h>\n#include <cmocka.h>\nint main(void){return 0;}\n' \
		| $(CC) -x c - -o /dev/null -lcmocka >/dev/null 2>&1 || missing="$$missing libcmocka-dev"; \
	if [ -z "$$missing" ]; then echo "deps: everything needed is installed"; exit 0; fi; \
	echo "deps: installing$$missing"; \
	if command -v apt-get >/dev/null 2>&1; then \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing || \
		{ $$sudo apt-get update -q && \
		  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; }; \
	else \
		echo "deps: no apt-get here. Install:$$missing (Debian/Ubuntu names;" \
		     "Fedora: cmocka-devel pkgconf clang gcc-c++; Homebrew: cmocka pkg-config llvm)" >&2; \
		exit 1; \
	fi

# ----------------------------------------------------------------- install

install: lib examples
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(BINDIR)
	install -m 644 include/cvae.h $(DESTDIR)$(INCLUDEDIR)/cvae.h
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/libcvae.a
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/$(notdir $(SHARED))
	ln -sf $(notdir $(SHARED)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libcvae.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@OMPFLAGS@|$(OMPFLAGS)|' \
	    pkgconfig/cvae.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/cvae.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/cvae.pc
	for p in $(notdir $(EXAMPLE_BIN)); do install -m 755 $(B)/bin/$$p $(DESTDIR)$(BINDIR)/$$p; done

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/cvae.h $(DESTDIR)$(LIBDIR)/libcvae.a \
	      $(DESTDIR)$(LIBDIR)/$(notdir $(SHARED)) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	      $(DESTDIR)$(LIBDIR)/libcvae.so $(DESTDIR)$(PKGCONFIGDIR)/cvae.pc
	for p in $(notdir $(EXAMPLE_BIN)); do rm -f $(DESTDIR)$(BINDIR)/$$p; done
	rm -f $(DESTDIR)$(BINDIR)/cvae-bench # installed as an example up to 0.6.0

clean:
	rm -rf $(B)

endif
