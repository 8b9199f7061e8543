# Sourced by bench/build-*.sh: where built tools are cached (outside git), and their reuse.
BENCH_CACHE="${LMA_BENCH_CACHE:-$HOME/.cache/llm-metrics-adapter/bench}"

# reuse_cached NAME VERSION BINARY: if BINARY was built before, say so, print its path, exit 0.
reuse_cached() {
  if [[ -x "$3" ]]; then
    echo ">> $1 $2: cached at $3" >&2
    echo "$3"
    exit 0
  fi
}

# need_go NAME: fail with a clear message when there is no Go to build NAME with.
need_go() {
  command -v go >/dev/null || { echo "!! go not found: install Go >= 1.22 to build $1" >&2; exit 1; }
}
