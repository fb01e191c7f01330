"""Where the categorical E-step kernel spends its time, as a user's process runs it (from numba's cache).

Run by hand: ``python benchmarks/profile_kernel.py [--case LABEL] [--seconds S] [--function NAME]``.
This VM's perf has no hardware counters (``perf stat`` says "not supported"), but sampling on the
``cpu-clock`` software event works. Numba's compiled code has no symbols perf can see, so the
script records the object code numba loads from its cache (the entry point's module holds its
own copies of the block functions: those are what runs, see ``benchmarks/README.md``), names
every function in it with ``nm``, writes ``/tmp/perf-PID.map`` for perf and a copy of the chosen
functions' machine code, then runs the E-step under ``perf record`` for a few seconds. It prints
the share of samples per function, per 256-byte region of the chosen function (with the region's
most frequent instructions) and the most sampled instructions with what precedes them (a sample
lands just after the instruction that stalled).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

REGION = 256


def run_kernel(case: str, seconds: float, folder: Path, functions: list[str]) -> None:
    """The child under perf: load the kernels from the cache, map their functions, run the E-step."""
    import ctypes
    import importlib

    from numba.core import codegen

    objects: list[bytes] = []
    unserialize = codegen.CPUCodeLibrary._unserialize.__func__  # type: ignore[attr-defined]

    def recording(cls, codegen_, state):
        kind, data = state[1], state[2]
        if kind == "object":
            objects.append(data[0])
        return unserialize(cls, codegen_, state)

    codegen.CPUCodeLibrary._unserialize = classmethod(recording)  # type: ignore[method-assign]
    import kernels as benchmark

    package = importlib.import_module("hmm.core.kernels")
    data = benchmark.e_step_data(case)
    benchmark.e_step(package, data)
    entry = importlib.import_module("hmm.core.kernels.forward_backward").categorical_forward_backward
    if not objects:
        raise SystemExit("the kernels were compiled, not loaded from numba's cache: run the script again")
    engine = next(iter(entry.overloads.values())).library._codegen._engine
    rows = []
    for number, code in enumerate(objects):
        path = folder / f"object{number}.o"
        path.write_bytes(code)
        listing = subprocess.run(["nm", "-S", "--defined-only", str(path)], capture_output=True, text=True).stdout
        for line in listing.splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[2] in "tTwW" and engine.is_symbol_defined(parts[3]):
                rows.append((engine.get_function_address(parts[3]), int(parts[1], 16), parts[3]))
    with open(f"/tmp/perf-{os.getpid()}.map", "w") as symbols:
        for address, size, name in sorted(set(rows)):
            short = short_name(name)
            symbols.write(f"{address:x} {size:x} {short}\n")
            if any(wanted in short for wanted in functions):
                # a function can have several specialisations, each its own code
                (folder / f"{short}@{address:x}.bin").write_bytes(ctypes.string_at(address, size))
    began = time.time()
    while time.time() - began < seconds:
        benchmark.e_step(package, data)


def short_name(mangled: str) -> str:
    """``_ZN3hmm4core7kernels16forward_backward15_backward_blockB4v..`` -> ``forward_backward._backward_block``."""
    if not mangled.startswith("_ZN"):
        return mangled
    names, text = [], mangled[3:]
    while match := re.match(r"\d+", text):
        start = len(match.group())
        length = int(match.group())
        names.append(text[start : start + length])
        text = text[start + length :]
    return ".".join(names[-2:]) if names else mangled


def report(data: Path, folder: Path, functions: list[str], top: int) -> None:
    """Shares per function, per region of the chosen functions, and their most sampled instructions."""
    samples = subprocess.run(["perf", "script", "-i", str(data), "-F", "ip,sym"], capture_output=True, text=True).stdout
    by_function: collections.Counter[str] = collections.Counter()
    ips: collections.Counter[int] = collections.Counter()
    for line in samples.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            by_function[parts[1].strip()] += 1
            ips[int(parts[0], 16)] += 1
    total = sum(by_function.values())
    print(f"{total} samples; by function (share of all samples):")
    for name, count in by_function.most_common(12):
        print(f"  {100 * count / total:5.1f}%  {name}")
    for code in sorted(folder.glob("*.bin")):
        name, address = code.stem.split("@")
        base = int(address, 16)
        listing = subprocess.run(
            ["objdump", "-D", "-b", "binary", "-m", "i386:x86-64", f"--adjust-vma={base:#x}", str(code)],
            capture_output=True,
            text=True,
        ).stdout
        instructions = {}
        for line in listing.splitlines():
            match = re.match(r"^\s+([0-9a-f]+):\s+(?:[0-9a-f]{2} )+\s*(\S.*)$", line)
            if match:
                instructions[int(match.group(1), 16)] = match.group(2).strip()
        mine = {ip: count for ip, count in ips.items() if base <= ip < base + code.stat().st_size}
        inside = sum(mine.values())
        if not inside:
            continue
        print(
            f"\n{name}: {100 * inside / total:.1f}% of all samples; by {REGION}-byte region (share of the function's):"
        )
        regions: collections.Counter[int] = collections.Counter()
        for ip, count in mine.items():
            regions[(ip - base) // REGION] += count
        for region, count in sorted(regions.items()):
            if count / inside >= 0.01:
                kinds = collections.Counter(
                    text.split()[0]
                    for address, text in instructions.items()
                    if region * REGION <= address - base < (region + 1) * REGION
                )
                mix = " ".join(f"{kind}:{n}" for kind, n in kinds.most_common(6))
                print(f"  +{region * REGION:05x} {100 * count / inside:5.1f}%  {mix}")
        print("  most sampled instructions (a sample lands after the one that waited):")
        addresses = sorted(instructions)
        for ip, count in sorted(mine.items(), key=lambda item: -item[1])[:top]:
            print(f"  +{ip - base:05x} {100 * count / inside:5.1f}%")
            if ip in instructions:
                at = addresses.index(ip)
                for address in addresses[max(0, at - 3) : at + 1]:
                    print(f"      {instructions[address]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="categorical K=10", help="a categorical case of benchmarks/library.py")
    parser.add_argument("--seconds", type=float, default=8.0, help="how long the E-step runs under perf")
    parser.add_argument(
        "--function",
        action="append",
        help="a function to break down by region (default: _forward_block and _backward_block)",
    )
    parser.add_argument("--top", type=int, default=8, help="most sampled instructions to show per function")
    parser.add_argument("--child", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    functions = args.function or ["_forward_block", "_backward_block"]
    if args.child:
        run_kernel(args.case, args.seconds, Path(args.child), functions)
        return
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        data = folder / "perf.data"
        child = [sys.executable, __file__, "--child", name, "--case", args.case, "--seconds", str(args.seconds)]
        for function in functions:
            child += ["--function", function]
        # the cache must hold the kernels first: a run of the E-step fills it
        fill = (
            "import importlib, kernels; "
            f"kernels.e_step(importlib.import_module('hmm.core.kernels'), kernels.e_step_data({args.case!r}))"
        )
        subprocess.run([sys.executable, "-c", fill], check=True, cwd=ROOT / "benchmarks")
        subprocess.run(
            ["perf", "record", "-q", "-e", "cpu-clock", "-F", "10000", "-o", str(data), "--", *child], check=True
        )
        report(data, folder, functions, args.top)


if __name__ == "__main__":
    main()
