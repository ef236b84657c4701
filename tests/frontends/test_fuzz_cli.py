"""Fuzz every CLI entry point that reads a program or rules (issue 12, acceptance).

``lift``, ``lift --check``, ``disasm``, ``compile --rules`` / ``--config`` / positional rules and
``explain --snapshot`` each get random and mutated inputs (10,000+ in all): valid seeds (programs
compiled in every shape, the bpftool text of one, rule files in every syntax, OCI configs and
snapshots built from compiled programs) with bytes flipped, truncated, spliced and inserted, and
plain random bytes.  What is under test is the CLI's own exception handling, so ``main()`` runs
in this process (a child per input would take ~25 min) and:

- no exception escapes ``main()`` (a traceback is a bug, whatever the input);
- the exit status is 0-3 with its documented meaning: 1 only where a verdict "denied" (or
  "unknown": never read as allowed) was printed, 2 and 3 with exactly one line on stderr and nothing on
  stdout.

Deterministic (``random.Random`` with fixed seeds), so a failure reproduces: the failing input is
in the assertion message, with its command line.
"""

from __future__ import annotations

import base64
import json
import random
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cgdev.core.disasm import disassemble
from cgdev.core.isa import decode
from cgdev.core.rules import RuleList, parse_rule_text
from cgdev.errors import InputError
from cgdev.ops.compile_rules import SHAPES, compile_rules
from cgdev.ops.layers import Inspection, Layer, ProgramRecord, UnitRecord
from cgdev.ops.snapshot import dumps
from cgdev.ops.targets import Target, TargetKind
from cli_inprocess import Ran, run_main

RULE_TEXTS = [
    "deny a\nallow c 1:3 rwm\nallow c 136:* rw\nallow b 8:0 r\n",
    "c 1:3 rwm\nc 1:5 rwm\nc 1:7 rwm\nc 5:0 rwm\nc 5:2 rwm\nc 136:* rwm\nc 10:200 rwm\n",
    "# systemd\nDeviceAllow=/dev/char/195:255 rw\nchar-136 rwm\nblock-* m\nchar-pts rw\n/dev/null rwm\n",
    "allow a *:* m\nallow c *:3 r\ndeny c 1:3 w\nallow b 7:* rwm\n",
    json.dumps(
        [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": True, "type": "c", "major": 136, "access": "rw"},
            {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"},
        ]
    ),
]
CONFIGS = [
    json.dumps({"linux": {"resources": {"devices": json.loads(RULE_TEXTS[4])}}}),
    json.dumps(
        {"ociVersion": "1.0.2", "linux": {"resources": {"devices": [{"allow": True, "access": "rwm"}]}}}
    ),
]
CHECKS = ["c 1:3 rw", "c 136:4 rw", "b 8:0 m", "c 195:255 r"]
DEVICES = ["c 1:3", "c 136:4", "b 8:0", "/dev/null", "c 195:255"]

# inputs per entry point (10,900 in all; ~45 s on a loaded 2-core machine)
COUNTS = {
    "lift": 2200,
    "lift_check": 2200,
    "disasm": 1500,
    "lift_text": 500,
    "compile_rules": 1500,
    "compile_config": 700,
    "compile_positional": 900,
    "explain_snapshot": 700,
    "snapshot_programs": 700,
}

Mutator = Callable[[random.Random, bytes, list[bytes]], bytes]


def _flip(rng: random.Random, data: bytes, _seeds: list[bytes]) -> bytes:
    out = bytearray(data or b"\0")
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _set_byte(rng: random.Random, data: bytes, _seeds: list[bytes]) -> bytes:
    out = bytearray(data or b"\0")
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
    return bytes(out)


def _truncate(rng: random.Random, data: bytes, _seeds: list[bytes]) -> bytes:
    return data[: rng.randint(0, len(data))]


def _splice(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    other = rng.choice(seeds)
    return data[: rng.randint(0, len(data))] + other[rng.randint(0, len(other)) :]


def _insert(rng: random.Random, data: bytes, _seeds: list[bytes]) -> bytes:
    at = rng.randint(0, len(data))
    return data[:at] + rng.randbytes(rng.randint(1, 16)) + data[at:]


def _duplicate(rng: random.Random, data: bytes, _seeds: list[bytes]) -> bytes:
    if not data:
        return data
    lo = rng.randrange(len(data))
    hi = rng.randint(lo, min(len(data), lo + 64))
    return data[:hi] + data[lo:hi] + data[hi:]


def _random(rng: random.Random, _data: bytes, _seeds: list[bytes]) -> bytes:
    return rng.randbytes(rng.choice((0, 1, 7, 8, 15, 16, 64, 256, 800)))


MUTATORS: tuple[Mutator, ...] = (_flip, _flip, _set_byte, _truncate, _splice, _insert, _duplicate, _random)


def mutants(rng: random.Random, seeds: list[bytes], count: int) -> Iterator[bytes]:
    """``count`` inputs: a seed through one to three mutators (a seed as is now and then)."""
    for i in range(count):
        data = rng.choice(seeds)
        if i % 50:
            for _ in range(rng.randint(1, 3)):
                data = rng.choice(MUTATORS)(rng, data, seeds)
        yield data


# -- seeds -----------------------------------------------------------------------------------------


def program_seeds() -> list[bytes]:
    """A compiled program of every shape for every rule text (the realistic inputs to mutate)."""
    out: list[bytes] = []
    for text in RULE_TEXTS[:2] + RULE_TEXTS[3:]:
        rules = parse_rule_text(text)
        for shape in SHAPES:
            try:
                raw = compile_rules(RuleList(rules), shape).raw
            except InputError:  # systemd cannot express deny rules
                continue
            if raw:
                out.append(raw)
    return out


def snapshot_seeds(programs: list[bytes]) -> list[bytes]:
    """Snapshots as ``cgdev snapshot`` writes them: a slice with a systemd unit, a container."""
    out = []
    for i, (outer, inner) in enumerate(zip(programs, programs[3:], strict=False)):
        if i >= 6:
            break
        unit = UnitRecord(
            "kubepods.slice",
            control_group="/kubepods.slice",
            device_policy="strict",
            device_allow=(("/dev/null", "rwm"), ("char-pts", "rw")),
            device_nodes={"/dev/null": ("c", 1, 3)},
        )
        layers = (
            Layer("/"),
            Layer("/kubepods.slice", (ProgramRecord(10 + i, "sd_devices", "ab" * 8, 0, outer),), unit),
            Layer("/kubepods.slice/cri-x.scope", (ProgramRecord(20 + i, "cgdev", "cd" * 8, 0, inner),)),
        )
        target = Target("cri-x", TargetKind.CONTAINER, "/kubepods.slice/cri-x.scope", runtime="crun")
        proc = "Character devices:\n  1 mem\n136 pts\n195 nvidia\n\nBlock devices:\n  8 sd\n"
        inspection = Inspection(
            target, layers, proc_devices=proc, devices={"/dev/null": ("c", 1, 3)}, systemd="ok",
            systemd_version="252",
        )  # fmt: skip
        out.append(dumps(inspection).encode())
    return out


# -- the properties --------------------------------------------------------------------------------


def _verdict_not_allowed_printed(ran: Ran) -> bool:
    """Exit 1 means "denied" (or, for a verdict cgdev cannot know, "not known to be allowed"):
    the output must then carry such a verdict (explain's top-level ``allowed``, lift's checks)."""
    if ran.out.startswith("{"):
        data = json.loads(ran.out)
        if "checks" in data:  # lift --json: the overall verdict of each checked request
            return any(c["allowed"] is not True for c in data["checks"])
        return data.get("allowed", True) is not True  # explain --json
    return any(mark in ran.out for mark in (": denied", ": unknown", "verdict now: DENY", "verdict now: ?"))


def _check(argv: list[str], data: bytes, ran: Ran | BaseException) -> str | None:
    """What is wrong with one run, or None."""
    where = f"cgdev {' '.join(argv)} on {len(data)} bytes {base64.b64encode(data[:600]).decode()}"
    if isinstance(ran, BaseException):
        tb = "".join(traceback.format_exception(ran))
        return f"{where}: {type(ran).__name__} escaped main():\n{tb}"
    if ran.code not in (0, 1, 2, 3):
        return f"{where}: exit {ran.code}"
    if "Traceback" in ran.err:
        return f"{where}: traceback on stderr:\n{ran.err}"
    if ran.code == 1 and not _verdict_not_allowed_printed(ran):
        return (
            f"{where}: exit 1 without a verdict 'denied' or 'unknown' printed:\n{ran.out[-400:]}\n{ran.err}"
        )
    if ran.code in (2, 3):
        lines = ran.err.strip().splitlines()
        if len(lines) != 1 or ran.out:
            return f"{where}: exit {ran.code} must be one line on stderr, nothing on stdout: {ran.err!r}"
    return None


def _fuzz(
    tmp_path: Path,
    seed: int,
    seeds: list[bytes],
    count: int,
    argv_of: Callable[[random.Random, str], list[str]],
) -> tuple[int, list[str]]:
    rng = random.Random(seed)
    path = str(tmp_path / "input")
    problems: list[str] = []
    codes = [0, 0, 0, 0]
    for data in mutants(rng, seeds, count):
        Path(path).write_bytes(data)
        argv = argv_of(rng, path)
        try:
            ran: Ran | BaseException = run_main(argv)
        except BaseException as exc:  # what escapes main() is what is tested
            if isinstance(exc, KeyboardInterrupt):
                raise
            ran = exc
        problem = _check(argv, data, ran)
        if problem is not None:
            problems.append(problem)
            if len(problems) >= 5:
                break
        elif isinstance(ran, Ran):
            codes[ran.code] += 1
    return sum(codes), problems


def _assert_clean(done: int, problems: list[str]) -> None:
    assert not problems, f"{len(problems)}+ bad runs; first:\n" + "\n\n".join(problems[:3])
    assert done > 0


@pytest.fixture(scope="module")
def programs() -> list[bytes]:
    return program_seeds()


def _lift(rng: random.Random, path: str) -> list[str]:
    return ["lift", path] + (["--json"] if rng.random() < 0.3 else [])


def _lift_check(rng: random.Random, path: str) -> list[str]:
    checks = [a for c in rng.sample(CHECKS, rng.randint(1, 3)) for a in ("--check", c)]
    return ["lift", path, *checks, "--no-policy"] + (["--json"] if rng.random() < 0.3 else [])


def _disasm(rng: random.Random, path: str) -> list[str]:
    return ["disasm", path] + (["--json"] if rng.random() < 0.3 else [])


def test_fuzz_lift(tmp_path: Path, programs: list[bytes]) -> None:
    _assert_clean(*_fuzz(tmp_path, 1201, programs, COUNTS["lift"], _lift))


def test_fuzz_lift_check(tmp_path: Path, programs: list[bytes]) -> None:
    _assert_clean(*_fuzz(tmp_path, 1202, programs, COUNTS["lift_check"], _lift_check))


def test_fuzz_disasm(tmp_path: Path, programs: list[bytes]) -> None:
    _assert_clean(*_fuzz(tmp_path, 1203, programs, COUNTS["disasm"], _disasm))


def test_fuzz_lift_text(tmp_path: Path, programs: list[bytes]) -> None:
    """bpftool's text listing (``--text``), mutated as text."""
    listings = [disassemble(decode(p)).encode() for p in programs[:8]]

    def argv(rng: random.Random, path: str) -> list[str]:
        return ["lift", "--text", path] + (["--check", rng.choice(CHECKS)] if rng.random() < 0.5 else [])

    _assert_clean(*_fuzz(tmp_path, 1204, listings, COUNTS["lift_text"], argv))


def test_fuzz_compile_rules_file(tmp_path: Path) -> None:
    seeds = [t.encode() for t in RULE_TEXTS]

    def argv(rng: random.Random, path: str) -> list[str]:
        shape = rng.choice(SHAPES)
        return ["compile", "--rules", path, "--shape", shape] + (["--json"] if rng.random() < 0.2 else [])

    _assert_clean(*_fuzz(tmp_path, 1205, seeds, COUNTS["compile_rules"], argv))


def test_fuzz_compile_config(tmp_path: Path) -> None:
    seeds = [c.encode() for c in CONFIGS]

    def argv(rng: random.Random, path: str) -> list[str]:
        return ["compile", "--config", path, "--shape", rng.choice(SHAPES)]

    _assert_clean(*_fuzz(tmp_path, 1206, seeds, COUNTS["compile_config"], argv))


def test_fuzz_compile_positional(tmp_path: Path) -> None:
    """Rules on the command line: each mutated line becomes one argument (as a shell passes
    bytes: undecodable ones as surrogates, which Python's argv holds the same way)."""
    seeds = [line.encode() for t in RULE_TEXTS[:4] for line in t.splitlines() if line]
    rng_lines = random.Random(1207)

    def argv(rng: random.Random, path: str) -> list[str]:
        data = Path(path).read_bytes().replace(b"\0", b"")
        words = [data.decode("utf-8", "surrogateescape")]
        words += [rng_lines.choice(seeds).decode() for _ in range(rng.randint(0, 3))]
        rng.shuffle(words)
        return ["compile", "--shape", rng.choice(SHAPES), "--", *words]

    _assert_clean(*_fuzz(tmp_path, 1207, seeds, COUNTS["compile_positional"], argv))


def test_fuzz_explain_snapshot(tmp_path: Path, programs: list[bytes]) -> None:
    seeds = snapshot_seeds(programs)
    assert len(seeds) >= 4

    def argv(rng: random.Random, path: str) -> list[str]:
        return ["explain", "--snapshot", path, "--device", rng.choice(DEVICES)] + (
            ["--json"] if rng.random() < 0.5 else []
        )

    _assert_clean(*_fuzz(tmp_path, 1208, seeds, COUNTS["explain_snapshot"], argv))


def test_fuzz_snapshot_programs(tmp_path: Path, programs: list[bytes]) -> None:
    """Snapshots that stay well-formed JSON but carry mutated programs: the lifter and the
    interpreter behind ``explain`` get the bad bytes, not the snapshot reader."""
    seeds = snapshot_seeds(programs)
    rng = random.Random(1209)
    documents = [json.loads(s) for s in seeds]

    def argv(rng2: random.Random, path: str) -> list[str]:
        document = json.loads(json.dumps(rng2.choice(documents)))
        layer = document["layers"][rng2.randint(1, 2)]
        raw = base64.b64decode(layer["programs"][0]["xlated_b64"])
        for _ in range(rng2.randint(1, 3)):
            raw = rng2.choice(MUTATORS)(rng2, raw, programs)
        layer["programs"][0]["xlated_b64"] = base64.b64encode(raw).decode()
        Path(path).write_text(json.dumps(document))
        return ["explain", "--snapshot", path, "--device", rng2.choice(DEVICES), "--json"]

    _assert_clean(*_fuzz(tmp_path, rng.randrange(1 << 30), [b"{}"], COUNTS["snapshot_programs"], argv))


def test_the_harness_runs_at_least_10000_inputs() -> None:
    assert sum(COUNTS.values()) >= 10_000
