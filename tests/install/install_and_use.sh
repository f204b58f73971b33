#!/usr/bin/env bash
# install_and_use: installs a Fathom build into a temporary prefix and builds, as a user would,
# every ```cpp block of README.md against it (one throwaway CMake project, one executable per
# block, each with the README's ```cmake block as its CMakeLists.txt and no C++ standard of its
# own), runs each and checks its output against the block's <!-- expect: REGEX --> lines.
# Also checks the installed headers (check_headers.cmake) and the users' compile and link
# lines: C++20, no -UNDEBUG, and nothing of CUDA when Fathom was built without it.
# Usage: install_and_use.sh <cmake> <fathom build dir> <fathom source dir>
set -euo pipefail
cmake=$1 build=$(cd "$2" && pwd) src=$(cd "$3" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fathom_install.XXXXXX")
# FATHOM_KEEP_TMP=1 keeps the prefix and the project for a look.
[ -n "${FATHOM_KEEP_TMP:-}" ] && echo "install_and_use: keeping $tmp" || trap 'rm -rf "$tmp"' EXIT
fail() { echo "install_and_use: FAIL: $*" >&2; exit 1; }

"$cmake" --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }
"$cmake" -DSOURCE="$src" -DPREFIX="$tmp/prefix" -P "$src/tests/install/check_headers.cmake"

# The README's blocks: block_N.cpp with block_N.expect, and the cmake block.
proj=$tmp/proj
mkdir -p "$proj"
awk -v dir="$proj" '
  /^<!-- expect: .* -->$/ { sub(/^<!-- expect: /, ""); sub(/ -->$/, ""); expect = expect $0 "\n"; next }
  /^```cpp$/   { n++; out = dir "/block_" n ".cpp"; printf "%s", expect > (dir "/block_" n ".expect"); expect = ""; inblock = 1; next }
  /^```cmake$/ { cm++; out = dir "/readme_" cm ".cmake"; inblock = 1; next }
  /^```/       { if (inblock) { inblock = 0; close(out) } else expect = ""; next }
  inblock      { print > out; next }
  /^./         { expect = "" }
' "$src/README.md"
blocks=$(ls "$proj"/block_*.cpp 2>/dev/null | wc -l)
[ "$blocks" -ge 1 ] || fail "README.md has no \`\`\`cpp block"
[ -f "$proj/readme_1.cmake" ] && [ ! -f "$proj/readme_2.cmake" ] || fail "README.md must have exactly one \`\`\`cmake block"
grep -q 'find_package(Fathom REQUIRED' "$proj/readme_1.cmake" || fail "the cmake block has no find_package(Fathom REQUIRED)"
grep -q 'Fathom::fathom' "$proj/readme_1.cmake" || fail "the cmake block does not link Fathom::fathom"
target=$(sed -n 's/^ *add_executable(\([A-Za-z0-9_]*\) .*/\1/p' "$proj/readme_1.cmake" | head -1)
[ -n "$target" ] || fail "the cmake block has no add_executable(<name> main.cpp)"

{ echo "cmake_minimum_required(VERSION 3.25)"; echo "project(readme_blocks LANGUAGES CXX)"; } >"$proj/CMakeLists.txt"
for f in "$proj"/block_*.cpp; do
  n=$(basename "$f" .cpp); n=${n#block_}
  [ -s "$proj/block_$n.expect" ] || fail "README \`\`\`cpp block $n has no <!-- expect: REGEX --> line above it"
  mkdir "$proj/b$n"; mv "$f" "$proj/b$n/main.cpp"
  # The README's lines, only the target renamed (target names are global in one project).
  sed "s/\b$target\b/${target}_$n/g" "$proj/readme_1.cmake" >"$proj/b$n/CMakeLists.txt"
  echo "add_subdirectory(b$n)" >>"$proj/CMakeLists.txt"
done

"$cmake" -S "$proj" -B "$proj/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
  ${CMAKE_CXX_COMPILER_LAUNCHER:+-DCMAKE_CXX_COMPILER_LAUNCHER=$CMAKE_CXX_COMPILER_LAUNCHER} \
  >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log"; fail "configuring the README project"; }
fathom_dir=$(sed -n 's/^Fathom_DIR:PATH=//p' "$proj/build/CMakeCache.txt")
[ "$fathom_dir" = "$tmp/prefix/lib/cmake/Fathom" ] || fail "found Fathom in '$fathom_dir', not the temporary prefix"
"$cmake" --build "$proj/build" -j2 >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; fail "building the README blocks"; }

cc=$proj/build/compile_commands.json
links=$(cat "$proj"/build/b[0-9]*/CMakeFiles/*.dir/link.txt)
grep -q -- '-UNDEBUG' "$cc" && fail "-UNDEBUG reached the user's compile commands"
[ "$(grep -c '"command"' "$cc")" -eq "$(grep -cE '"command".*-std=(c|gnu)\+\+20' "$cc")" ] \
  || fail "a user compile command lacks -std=c++20 / gnu++20: $(grep '"command"' "$cc")"
if grep -q 'set(Fathom_WITH_CUDA OFF)' "$tmp/prefix/lib/cmake/Fathom/FathomConfig.cmake"; then
  grep -qi cuda "$cc" && fail "a CPU-only Fathom put CUDA on the user's compile line: $(grep -i cuda "$cc")"
  grep -qi cuda <<<"$links" && fail "a CPU-only Fathom put CUDA on the user's link line: $links"
fi

for dir in "$proj"/b[0-9]*/; do
  n=$(basename "$dir"); n=${n#b}
  exe=$proj/build/b$n/${target}_$n
  rc=0; out=$("$exe" 2>&1) || rc=$?
  [ "$rc" -eq 0 ] || { echo "$out"; fail "README block $n exited with $rc"; }
  while IFS= read -r re; do
    grep -qE -- "$re" <<<"$out" || { echo "$out"; fail "README block $n: no output line matches /$re/"; }
  done <"$proj/block_$n.expect"
  echo "README block $n: ok ($(wc -l <<<"$out") lines)"
done
echo "install_and_use: ok ($blocks README programs built against the installed package)"
