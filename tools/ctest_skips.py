#!/usr/bin/env python3
"""The skipped tests of a ctest run, by reason (tools/test.sh prints what this writes).
    tools/ctest_skips.py JUNIT TESTS_JSON FRAGMENT
JUNIT: ctest --output-junit's file; TESTS_JSON: ctest --show-only=json-v1 (for the labels).
Each skip is `gpu` (the test carries the gpu label), `isa` (GoogleTest's "ISA level X skipped: this
CPU lacks it", and /proc/cpuinfo agrees) or `other`. Prints each `other` skip with its reason, writes
the summary fragment ("49 skipped: 38 gpu (no GPU), 11 isa (avx512 not on this CPU)") to FRAGMENT,
and exits 3 when there was an `other` skip, 0 otherwise."""
import json, re, sys, xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

junit, tests_json, fragment_path = sys.argv[1:4]
fragment = Path(fragment_path)
try:
    cases = ET.parse(junit).getroot().iter("testcase")
except (OSError, ET.ParseError) as e:
    fragment.write_text(f"skips not counted ({junit}: {e})")
    sys.exit(0)
gpu_tests = set()
try:
    for test in json.loads(Path(tests_json).read_text())["tests"]:
        for prop in test.get("properties", []):
            if prop["name"] == "LABELS" and "gpu" in prop["value"]:
                gpu_tests.add(test["name"])
except (OSError, ValueError, KeyError):
    pass  # no labels: every skip below is `other`, and named
cpu_flags = set()
try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(("flags", "Features")):
            cpu_flags |= set(line.split(":", 1)[1].split())
except OSError:
    pass
# What kernels/cpu/cpu_isa.cpp's cpu_supports() asks of each level, in /proc/cpuinfo's names.
LEVEL_FLAGS = {"avx2": {"avx2", "fma", "f16c"},
               "avx512": {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni"},
               "neon": {"asimd"}, "neon-dotprod": {"asimddp"}}


def reason(out, message):
    """The skip's own words: GoogleTest's message, a script's SKIPPED line, or ctest's rule."""
    lines = [l.strip() for l in out.splitlines()]
    for i, l in enumerate(lines):
        if l.endswith(": Skipped"):
            said = []
            for m in lines[i + 1:]:
                if m.startswith("[  SKIPPED ]"):
                    break
                said.append(m)
            if any(said):
                return " ".join(m for m in said if m)
    said = [l for l in lines if l and not l.startswith("[")]  # not GoogleTest's own [ RUN ] lines
    return said[-1] if said else message or "no reason given"


gpu, isa, other = Counter(), Counter(), []
for case in cases:
    skipped = case.find("skipped")
    if skipped is None:
        continue
    name = case.get("name", "?")
    why = reason(case.findtext("system-out") or "", skipped.get("message"))
    if name in gpu_tests:
        gpu["no GPU" if "needs a CUDA GPU" in why else why] += 1
        continue
    level = re.search(r"ISA level (\S+) skipped: this CPU \(.*\) lacks it", why)
    if level:
        needs = LEVEL_FLAGS.get(level.group(1))
        if needs is None or not cpu_flags or not needs <= cpu_flags:
            isa[level.group(1)] += 1
            continue
        why += f" (but /proc/cpuinfo lists {' '.join(sorted(needs))})"
    other.append((name, why))

parts = []
if gpu:
    reasons = [r for r in gpu if r != "no GPU"]
    parts.append(f"{sum(gpu.values())} gpu (" +
                 ("no GPU" if not reasons else "; ".join(f"{n} {r}" for r, n in gpu.items())) + ")")
if isa:
    parts.append(f"{sum(isa.values())} isa ({', '.join(sorted(isa))} not on this CPU)")
if other:
    parts.append(f"{len(other)} other")
    print(f"tiergate: {len(other)} tests skipped for a reason other than a missing GPU or CPU level:")
    for name, why in other:
        print(f"tiergate:   {name}: {why}")
total = sum(gpu.values()) + sum(isa.values()) + len(other)
fragment.write_text(f"{total} skipped" + (": " + ", ".join(parts) if parts else ""))
sys.exit(3 if other else 0)
