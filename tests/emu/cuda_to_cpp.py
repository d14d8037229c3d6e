#!/usr/bin/env python3
"""Rewrites a CUDA source (cuda/*.cu) into C++ that the CPU emulator runs.

Usage: cuda_to_cpp.py INPUT.cu OUTPUT.cpp

The emulation test must exercise the real kernels, so the rewrite is as small as possible:

1. Every launch `kernel<T, V><<<grid, block[, shared_bytes[, stream]]>>>(args)` becomes
   `::emu::launch(kernel<T, V>, grid, block, shared_bytes, stream, args)` (0 and nullptr when
   omitted). The triple-chevron syntax is the only part of CUDA that no header can supply. The
   configuration is kept, so it is still compiled and type-checked; emu::launch validates it.
   A kernel template of the same file launched without template arguments (they are deduced from
   the call) becomes `::emu::launch_deduced([](const auto&... a) { kernel(a...); }, ...)`, since
   a template name cannot be passed as a function pointer.
2. Every dynamic shared memory declaration `extern __shared__ [__align__(N)] T name[];` inside a
   function becomes `auto* const name = reinterpret_cast<T*>(::emu::dynamic_shared_memory());`,
   the launch's buffer (128-byte aligned: a larger N is an error). A declaration is not a
   statement any header can turn into a call. At namespace scope it is refused (declare it in the
   kernel): there the call would run before any launch.
3. `#include <cuda_runtime.h>` is prepended, as nvcc does implicitly for every .cu file; the
   emulation's include path resolves it to tests/emu/fake/cuda_runtime.h, which maps __global__,
   __shared__, threadIdx, __syncthreads() and the rest onto plain C++.
4. A `#line 1 "INPUT.cu"` directive follows, and each rewrite keeps the line count, so compiler
   diagnostics and __LINE__ point into the original source.

Everything else is copied verbatim. The script fails (exit status 1, naming the file and line)
on a launch or declaration it cannot parse, rather than emit code that would test something else.
"""

import re
import sys

OPEN = "([{"
CLOSE = ")]}"


class TransformError(Exception):
    pass


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


def kernel_name_start(text, end):
    """Start of the kernel expression ending at `end` (just before `<<<`): an identifier, possibly
    qualified with ::, possibly followed by a template argument list (nesting allowed)."""
    i = end
    while i > 0 and text[i - 1].isspace():
        i -= 1
    if i > 0 and text[i - 1] == ">":  # template arguments: walk back to the matching '<'
        depth = 0
        while i > 0:
            i -= 1
            ch = text[i]
            if ch == ">":
                depth += 1
            elif ch == "<":
                depth -= 1
                if depth == 0:
                    break
            elif ch in ";{}":
                raise TransformError("unbalanced template arguments before <<<")
        else:
            raise TransformError("unbalanced template arguments before <<<")
        while i > 0 and text[i - 1].isspace():
            i -= 1
    start = i
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_:"):
        start -= 1
    if start == i:
        raise TransformError("no kernel name before <<<")
    return start


def split_top_level(config):
    """Splits the launch configuration at commas outside (), [] and {}. Angle brackets are not
    counted: in an expression they are usually comparisons."""
    parts, depth, current = [], 0, ""
    for ch in config:
        if ch in OPEN:
            depth += 1
        elif ch in CLOSE:
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    parts.append(current.strip())
    return parts


TEMPLATE_KERNEL = re.compile(
    r"template\s*<[^;{]*?>\s*__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\("
)


def template_kernels(text):
    """Names of the __global__ function templates the file defines."""
    return set(TEMPLATE_KERNEL.findall(text))


def rewrite_launches(text):
    templates = template_kernels(text)
    out = []
    pos = 0
    while True:
        start_chevrons = text.find("<<<", pos)
        if start_chevrons < 0:
            out.append(text[pos:])
            return "".join(out)
        line = line_of(text, start_chevrons)
        line_start = text.rfind("\n", 0, start_chevrons) + 1
        if "//" in text[line_start:start_chevrons]:  # mentioned in a comment, not a launch
            out.append(text[pos : start_chevrons + 3])
            pos = start_chevrons + 3
            continue
        try:
            name_start = kernel_name_start(text, start_chevrons)
            end_chevrons = text.find(">>>", start_chevrons + 3)
            if end_chevrons < 0:
                raise TransformError("<<< without >>>")
            config = split_top_level(text[start_chevrons + 3 : end_chevrons])
            if not 2 <= len(config) <= 4 or not all(config):
                raise TransformError("expected <<<grid, block[, shared_bytes[, stream]]>>>")
            config += ["0", "nullptr"][len(config) - 2 :]
            paren = end_chevrons + 3
            while paren < len(text) and text[paren].isspace():
                paren += 1
            if paren >= len(text) or text[paren] != "(":
                raise TransformError("expected ( after >>>")
            after = paren + 1
            while after < len(text) and text[after].isspace():
                after += 1
            has_args = after < len(text) and text[after] != ")"
        except TransformError as e:
            raise TransformError("line %d: %s" % (line, e)) from None
        kernel = text[name_start:start_chevrons].strip()
        replaced = text[name_start : paren + 1]
        if kernel.split("::")[-1] in templates:  # bare template name: deduce from the call
            callee = "[](const auto&... emu_args) { %s(emu_args...); }" % kernel
            call = "::emu::launch_deduced(%s, %s%s" % (callee, ", ".join(config), ", " if has_args else "")
        else:
            call = "::emu::launch(%s, %s%s" % (kernel, ", ".join(config), ", " if has_args else "")
        # Keep the line count: the newlines the launch syntax spanned go inside the argument list.
        call += "\n" * replaced.count("\n")
        out.append(text[pos:name_start])
        out.append(call)
        pos = paren + 1


EXTERN_SHARED = re.compile(r"extern\s+__shared__\b")
ALIGNMENT = re.compile(r"\b(?:__align__|alignas)\s*\(\s*(\d+)\s*\)")
UNSIZED_ARRAY = re.compile(r"^(?P<type>.*?\S)\s*\b(?P<name>[A-Za-z_]\w*)\s*\[\s*\]$", re.S)
MAX_DYNAMIC_SHARED_ALIGNMENT = 128  # what emu::dynamic_shared_memory() guarantees


def code_chars(text):
    """Yields the index of every character outside comments and string or character literals."""
    i, n = 0, len(text)
    while i < n:
        if text.startswith("//", i):
            i = text.find("\n", i)
            if i < 0:
                return
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if text[i] in "\"'":
            j = i + 1
            while j < n and text[j] != text[i]:
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        yield i
        i += 1


def starts_word(text, i, word_re):
    return (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")) and word_re.match(text, i)


def extern_shared_declarations(text):
    """(start, at_namespace_scope) of each `extern __shared__` in code. The scope is tracked from
    the braces: one whose head (the code since the last ;, { or }) is `namespace ...` or
    `extern "C"` (the string is not code: `extern`) keeps namespace scope."""
    found, scopes, head = [], [], []
    for i in code_chars(text):
        ch = text[i]
        if ch == "{":
            scopes.append(bool(re.search(r"\bnamespace\b|\bextern\s*$", "".join(head))))
        elif ch == "}" and scopes:
            scopes.pop()
        elif ch == "e" and starts_word(text, i, EXTERN_SHARED):
            found.append((i, not scopes or scopes[-1]))
        if ch in "{};":
            head = []
        else:
            head.append(ch)
    return found


def rewrite_dynamic_shared(text):
    out, pos = [], 0
    for start, at_namespace_scope in extern_shared_declarations(text):
        line = line_of(text, start)
        end = text.find(";", start)
        if end < 0:
            raise TransformError("line %d: extern __shared__ without ;" % line)
        declaration = text[EXTERN_SHARED.match(text, start).end() : end]
        alignments = [int(n) for n in ALIGNMENT.findall(declaration)]
        m = UNSIZED_ARRAY.match(ALIGNMENT.sub(" ", declaration).strip())
        if at_namespace_scope:
            raise TransformError("line %d: extern __shared__ at namespace scope; declare it inside the kernel" % line)
        if not m:
            raise TransformError("line %d: expected extern __shared__ [__align__(N)] TYPE NAME[];" % line)
        if alignments and max(alignments) > MAX_DYNAMIC_SHARED_ALIGNMENT:
            raise TransformError(
                "line %d: extern __shared__ aligned to %d bytes; the emulation aligns it to %d"
                % (line, max(alignments), MAX_DYNAMIC_SHARED_ALIGNMENT)
            )
        element = " ".join(m.group("type").split())
        out.append(text[pos:start])
        out.append(
            "auto* const %s = reinterpret_cast<%s*>(::emu::dynamic_shared_memory());" % (m.group("name"), element)
        )
        out.append("\n" * text.count("\n", start, end))  # keep the line count
        pos = end + 1
    out.append(text[pos:])
    return "".join(out)


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    source, target = argv[1], argv[2]
    with open(source, encoding="utf-8") as f:
        text = f.read()
    try:
        body = rewrite_launches(rewrite_dynamic_shared(text))
    except TransformError as e:
        sys.stderr.write("%s: %s\n" % (source, e))
        return 1
    quoted = source.replace("\\", "\\\\").replace('"', '\\"')
    header = (
        "// Generated by tests/emu/cuda_to_cpp.py from %s: do not edit.\n"
        "#include <cuda_runtime.h>\n"
        '#line 1 "%s"\n' % (source, quoted)
    )
    with open(target, "w", encoding="utf-8") as f:
        f.write(header + body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
