#!/usr/bin/env bash
# Puts CIFAR-10 where convnet reads it (data.path, default data/cifar10).
#
#   tools/prepare_cifar10.sh [--from ARCHIVE] [--out DIR] [--format folder|binary]
#
#   --from ARCHIVE  a .tar.xz / .tar.gz holding either the JPEG tree (train/<class>/*.jpg,
#                   test/<class>/*.jpg) or the official binary release (cifar-10-batches-bin/).
#                   Without it the official binary release is downloaded from
#                   https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz (md5-checked).
#   --out DIR       destination folder (default data/cifar10).
#   --format F      what DIR should hold: "folder" (the JPEG tree; needs a JPEG archive) or
#                   "binary" (data_batch_1..5.bin + test_batch.bin; loads much faster). A JPEG tree
#                   is converted with `${CONVNET:-build/convnet} convert-data SRC DST`, so build
#                   convnet first. Default: whatever the archive holds.
#
# Idempotent: when DIR already holds the requested form it does nothing. Work happens in
# DIR.partial and is moved into place only when complete, so an interrupted run leaves no
# half-prepared DIR behind.
set -euo pipefail

URL="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
MD5="c32a1d4ab5d03f1284b67883e8d87530"
CONVNET="${CONVNET:-build/convnet}"

from=""
out="data/cifar10"
format=""

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "prepare_cifar10: error: $*" >&2; exit 1; }
say() { echo "prepare_cifar10: $*"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --from) [[ $# -ge 2 ]] || die "--from needs an archive path"; from="$2"; shift 2 ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a folder"; out="$2"; shift 2 ;;
    --format) [[ $# -ge 2 ]] || die "--format needs folder or binary"; format="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
case "$format" in ""|folder|binary) ;; *) die "--format must be folder or binary, got '$format'" ;; esac
out="${out%/}"
[[ -n "$out" ]] || die "--out must not be empty"

# Prints "binary" or "folder" for what DIR holds (binary wins when both), nothing otherwise.
state_of() {
  local dir="$1" d
  for d in "$dir" "$dir/cifar-10-batches-bin"; do
    if [[ -s "$d/data_batch_1.bin" && -s "$d/data_batch_2.bin" && -s "$d/data_batch_3.bin" &&
          -s "$d/data_batch_4.bin" && -s "$d/data_batch_5.bin" && -s "$d/test_batch.bin" ]]; then
      echo binary; return
    fi
  done
  if [[ -d "$dir/train" && -d "$dir/test" ]]; then echo folder; return; fi
  local hits=() sub
  for sub in "$dir"/*/; do
    [[ -d "${sub}train" && -d "${sub}test" ]] && hits+=("$sub")
  done
  if [[ ${#hits[@]} -eq 1 ]]; then echo folder; fi
}

partial="$out.partial"
converted="$out.converted.partial"
download="$out.download.tar.gz"
cleanup() { rm -rf "$partial" "$converted" "$download"; }
trap cleanup EXIT

convert() {  # convert SRC DST: JPEG tree -> binary files
  [[ -x "$CONVNET" ]] || die "converting to binary needs the convnet program at '$CONVNET': build it first (cmake --build build) or set CONVNET=/path/to/convnet"
  say "converting $1 to CIFAR-10 binary files with $CONVNET convert-data"
  rm -rf "$2"
  "$CONVNET" convert-data "$1" "$2"
  [[ "$(state_of "$2")" == binary ]] || die "'$CONVNET convert-data' did not produce the binary files in $2"
}

# 1. Already there?
if [[ -d "$out" ]]; then
  have="$(state_of "$out")"
  if [[ -n "$have" && ( -z "$format" || "$format" == "$have" ) ]]; then
    say "$out already holds CIFAR-10 ($have); nothing to do"
    exit 0
  fi
  if [[ "$have" == folder && "$format" == binary ]]; then
    convert "$out" "$converted"
    rm -rf "$out"
    mv "$converted" "$out"
    say "done: $out now holds CIFAR-10 binary files (set data.path: $out)"
    exit 0
  fi
  if [[ "$have" == binary && "$format" == folder ]]; then
    die "$out holds the binary release; image folders can only come from a JPEG archive (--from ARCHIVE) into another --out"
  fi
  if [[ -n "$(ls -A "$out")" ]]; then
    die "$out exists but does not hold a prepared CIFAR-10; remove it or choose another --out"
  fi
fi

# 2. Get the archive.
if [[ -z "$from" ]]; then
  [[ "$format" != folder ]] || die "--format folder needs a JPEG archive (--from ARCHIVE): the official download is binary"
  mkdir -p "$(dirname "$out")"
  say "downloading $URL"
  if command -v curl >/dev/null 2>&1; then
    curl -fL --retry 3 -o "$download" "$URL" || die "download failed: $URL"
  elif command -v wget >/dev/null 2>&1; then
    wget -O "$download" "$URL" || die "download failed: $URL"
  else
    die "neither curl nor wget is installed; download $URL yourself and pass --from FILE"
  fi
  sum="$(md5sum "$download" | cut -d' ' -f1)"
  [[ "$sum" == "$MD5" ]] || die "md5 of the download is $sum, expected $MD5 (corrupt or changed file)"
  say "md5 ok"
  from="$download"
fi
[[ -f "$from" ]] || die "--from '$from': no such file"

# 3. Unpack next to the destination, then move into place.
rm -rf "$partial"
mkdir -p "$partial"
say "unpacking $from"
tar -xf "$from" -C "$partial" || die "could not unpack '$from' (expected a .tar.xz or .tar.gz)"
got="$(state_of "$partial")"
[[ -n "$got" ]] || die "'$from' holds neither CIFAR-10 binary files (data_batch_1..5.bin, test_batch.bin) nor image folders (train/<class>/, test/<class>/)"
if [[ "$format" == folder && "$got" == binary ]]; then
  die "'$from' is the binary release; --format folder needs a JPEG archive"
fi
if [[ "$format" == binary && "$got" == folder ]]; then
  convert "$partial" "$converted"
  rm -rf "$partial"
  mv "$converted" "$partial"
  got=binary
fi
[[ ! -d "$out" ]] || rmdir "$out"  # empty (checked above)
mkdir -p "$(dirname "$out")"
mv "$partial" "$out"
say "done: $out holds CIFAR-10 ($got); set data.path: $out"
