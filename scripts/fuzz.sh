#!/usr/bin/env bash
# fuzz.sh DIR SECONDS TARGET...: runs the libFuzzer binaries DIR/fuzz_TARGET (make fuzz
# builds them) for SECONDS each, starting from the seeds in tests/fuzz/TARGET/. What
# libFuzzer adds goes to DIR/corpus/TARGET (kept, so the next run starts from it), its
# log to DIR/TARGET.log. A crash, leak, timeout or out-of-memory fails the target and is
# reported with the input that caused it; the script fails when any target did.
# FUZZ_TIMEOUT (seconds, default 10) is how long one input may take before it is a hang.
set -uo pipefail

dir=$1 secs=$2
shift 2
# names in stack traces: llvm-14 installs the symbolizer outside PATH
sym=/usr/lib/llvm-14/bin/llvm-symbolizer
[ -x "$sym" ] && export ASAN_SYMBOLIZER_PATH=$sym
export UBSAN_OPTIONS=print_stacktrace=1

failed=()
for t in "$@"; do
  bin=$dir/fuzz_$t seeds=tests/fuzz/$t corpus=$dir/corpus/$t found=$dir/findings/$t/
  log=$dir/$t.log
  mkdir -p "$corpus" "$found"
  rm -f "$found"{crash,leak,timeout,oom}-*
  echo "== fuzz $t: ${secs} s from $seeds (log: $log)"
  # inputs here are parsed in well under a second: one taking FUZZ_TIMEOUT is a hang
  # in the foreground (Ctrl-C reaches it), its pid noted for the clean-up below
  (echo $BASHPID >"$dir/$t.pid"
   exec "$bin" -max_total_time="$secs" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$found" "$corpus" "$seeds") >"$log" 2>&1
  rc=$?
  pid=$(cat "$dir/$t.pid")
  # a target that crashed had no exit handler to remove its scratch file (tests/fuzz/fuzz.h)
  [ -n "$pid" ] && rm -rf /dev/shm/loco-fuzz-*-"$pid" /tmp/loco-fuzz-*-"$pid"
  grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$log"
  if [ $rc -ne 0 ]; then
    input=$(ls -t "$found"{crash,leak,timeout,oom}-* 2>/dev/null | head -n 1)
    grep -E -m 3 'ERROR|runtime error|ALARM|out-of-memory|^[^ ]*:[0-9]+: ' "$log"
    echo "== fuzz $t FAILED (exit $rc): input ${input:-none written, see $log}"
    [ -n "$input" ] && echo "   reproduce: $bin $input"
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "== fuzz: findings in ${failed[*]}"
  exit 1
fi
echo "== fuzz: ${*} ran clean for ${secs} s each"
