"""``cgdev completion bash|zsh`` (issue 12 item 18): generated from the parsers, run in real shells.

bash: the script is sourced in a real bash and its function driven through COMP_WORDS/COMP_CWORD,
as bash's completion does.  zsh: the script is loaded by a real ``compinit``, its function driven
with ``words``/``CURRENT`` (compadd/_describe replaced by functions that print what they were
given), and once through zsh's own completion system in a pseudo-terminal (zpty).  The expected
values come from the parsers, so a flag added to a command is expected without editing this test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cgdev.cli.argtree import cgdev_tree
from cgdev.cli.compile_cmd import SHAPES


def _script(shell: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cgdev", "completion", shell], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _bash(script: Path, *lines: str) -> list[str]:
    driver = "\n".join(
        [
            f"source {script}",
            "complete -p cgdev || exit 7",
            't() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))',
            '      _cgdev; echo "${COMPREPLY[*]}"; }',
            *lines,
        ]
    )
    done = subprocess.run(["bash", "-c", driver], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "cgdev.bash"
    path.write_text(_script("bash"))
    return path


def test_bash_registers_and_completes_commands(bash_script: Path) -> None:
    done = subprocess.run(
        ["bash", "-c", f"source <({sys.executable} -m cgdev completion bash); complete -p cgdev"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "-F _cgdev" in done.stdout and "cgdev" in done.stdout, done.stderr
    registered, com, everything, lab = _bash(bash_script, "t cgdev com", "t cgdev ''", "t cgdev lab ''")
    assert "-F _cgdev" in registered
    assert com.split() == ["compile", "completion"]
    tree = cgdev_tree()
    assert everything.split() == [c.path[-1] for c in tree.subcommands]
    lab_tree = next(c for c in tree.subcommands if c.path[-1] == "lab")
    assert lab.split() == [c.path[-1] for c in lab_tree.subcommands]


def test_bash_flags_and_choices(bash_script: Path) -> None:
    lines = _bash(
        bash_script,
        "t cgdev compile --sh",
        "t cgdev compile --shape ''",
        "t cgdev compile --rules f.txt --shape crun",
        "t cgdev compile --shape = cr",  # bash splits --shape=cr at "="
        "t cgdev compile --format ''",
        "t cgdev check --",
        "t cgdev completion ''",
        "t cgdev compile --rules ''",  # a FILE: nothing here, `complete -o default` lists files
    )
    _, flag, shapes, crun, split, formats, check, shells, files = lines
    assert flag == "--shape"
    assert shapes.split() == list(SHAPES)
    assert crun.split() == ["crun", "crun-1.8"]
    assert split.split() == ["crun", "crun-1.8"]
    assert formats.split() == ["raw", "elf"]
    assert check.split() == ["--help", "--access", "--json"]
    assert shells.split() == ["bash", "zsh"]
    assert files == ""


def _zsh() -> str:
    zsh = shutil.which("zsh")
    if zsh is None:
        from capabilities import skip_unless_ci

        skip_unless_ci("zsh is not installed (apt-get install zsh; scripts/bootstrap installs it)")
    return zsh  # type: ignore[return-value]


def test_zsh_completion_function(tmp_path: Path) -> None:
    zsh = _zsh()
    script = tmp_path / "_cgdev"
    script.write_text(_script("zsh"))
    driver = f"""
autoload -Uz compinit && compinit -u -d {tmp_path}/zcompdump
source {script}
print -r -- "registered: $_comps[cgdev]"
compadd() {{ [[ $1 == -- ]] && shift; print -r -- "compadd: $*" }}
_describe() {{ local name=${{@[-1]}}; print -r -- "describe: ${{(j: :)${{(@)${{(P)name}}%%:*}}}}" }}
_files() {{ print -r -- "files" }}
compset() {{ cur=${{cur#*=}} }}
t() {{ words=("$@"); CURRENT=$#words; _cgdev }}
t cgdev com
t cgdev compile --shape ''
t cgdev compile --shape=cr
t cgdev check --
t cgdev compile --rules ''
"""
    done = subprocess.run([zsh, "-f", "-c", driver], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    registered, commands, shapes, shapes_eq, check, files = done.stdout.splitlines()
    assert registered == "registered: _cgdev"
    assert commands.split()[1:] == [c.path[-1] for c in cgdev_tree().subcommands]
    assert shapes == shapes_eq == "compadd: " + " ".join(SHAPES)
    assert check == "describe: -h --help --access --json"
    assert files == "files"


def test_zsh_completes_through_its_own_completion_system(tmp_path: Path) -> None:
    """The real thing: an interactive zsh in a pty, TAB after ``--shape cr`` lists both crun shapes."""
    zsh = _zsh()
    script = tmp_path / "_cgdev"
    script.write_text(_script("zsh"))
    driver = f"""
zmodload zsh/zpty
zpty z {zsh} -f -i
zpty -w z 'PS1="%% "; autoload -Uz compinit; compinit -u -d {tmp_path}/zcompdump'
zpty -w z 'source {script}; cgdev() {{ : }}'
zpty -w -n z $'cgdev compile --shape cr\\t\\t'
zpty -r -m z out '*crun-1.8*' && print found
zpty -d z
"""
    done = subprocess.run([zsh, "-f", "-c", driver], capture_output=True, text=True, check=False, timeout=60)
    assert done.stdout.strip().endswith("found"), done.stdout[-2000:] + done.stderr[-2000:]
