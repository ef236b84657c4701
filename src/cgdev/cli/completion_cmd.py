"""``cgdev completion bash|zsh``: a shell completion script generated from the argparse tree.

Generated, not hand-written, so it cannot drift from the parsers (``cli/argtree.py``).  Both
scripts carry the tree as data (per command path: sub-commands, flags, flags that take a value,
the choices of each value) and one small function that finds the command path in the words typed
so far, skipping flags and their values.  A value without choices (a FILE, a DEVICE) completes
file names.
"""

from __future__ import annotations

import argparse
import shlex

from cgdev.cli.argtree import CliCommand, cgdev_tree

HELP = "print a bash or zsh completion script (generated from the parsers)"
DESCRIPTION = """\
Print a shell completion script for cgdev, generated from its argument parsers: sub-commands,
their flags, and the values of flags with fixed choices (--shape, --semantics, --format, ...).

  source <(cgdev completion bash)                    # in ~/.bashrc
  cgdev completion bash > /etc/bash_completion.d/cgdev
  cgdev completion zsh > "${fpath[1]}/_cgdev"        # then restart zsh (compinit)
  source <(cgdev completion zsh)                     # in ~/.zshrc, after compinit
"""

SHELLS = ("bash", "zsh")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")


def _q(text: str) -> str:
    return shlex.quote(text)


def _case(name: str, entries: dict[str, str]) -> str:
    """A bash/zsh function printing the value for its key, via case (both shells parse it)."""
    lines = [f"{name}() {{", '    case "$1" in']
    lines += [f"    {_q(key)}) printf '%s\\n' {_q(value)} ;;" for key, value in entries.items() if value]
    lines += ["    esac", "}"]
    return "\n".join(lines)


def _tables(tree: CliCommand, prefix: str, *, described: bool) -> str:
    """The tree as four case functions keyed by command path (and path|flag for choices)."""
    subs: dict[str, str] = {}
    opts: dict[str, str] = {}
    valued: dict[str, str] = {}
    choices: dict[str, str] = {}
    args: dict[str, str] = {}
    for command in tree.walk():
        key = command.name
        if described:  # zsh: one "name:description" per line, for _describe
            subs[key] = "\n".join(f"{s.path[-1]}:{s.help}" for s in command.subcommands)
            opts[key] = "\n".join(
                f"{flag.replace(':', chr(92) + ':')}:{o.help}" for o in command.options for flag in o.flags
            )
        else:
            subs[key] = " ".join(s.path[-1] for s in command.subcommands)
            opts[key] = " ".join(flag for o in command.options for flag in o.flags)
        valued[key] = " ".join(flag for o in command.options if o.metavar is not None for flag in o.flags)
        for option in command.options:
            for flag in option.flags:
                choices[f"{key}|{flag}"] = " ".join(option.choices)
        args[key] = " ".join(c for a in command.arguments for c in a.choices)
    return "\n".join(
        [
            _case(f"{prefix}_subs", subs),
            _case(f"{prefix}_opts", opts),
            _case(f"{prefix}_valued", valued),
            _case(f"{prefix}_choices", choices),
            _case(f"{prefix}_args", args),
        ]
    )


BASH_BODY = r"""
# The command path ("cgdev lab run") of the words before the cursor; flags and their values skipped.
__cgdev_path() {
    local path=cgdev i w skip=
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if [[ -n $skip ]]; then skip=; continue; fi
        if [[ $w == -* ]]; then
            [[ $w != *=* && " $(__cgdev_valued "$path") " == *" $w "* ]] && skip=1
            continue
        fi
        [[ " $(__cgdev_subs "$path") " == *" $w "* ]] && path="$path $w"
    done
    printf '%s' "$path"
}

_cgdev() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]} path
    path=$(__cgdev_path)
    COMPREPLY=()
    if [[ $cur == --*=* ]]; then
        local flag=${cur%%=*}
        COMPREPLY=($(compgen -P "$flag=" -W "$(__cgdev_choices "$path|$flag")" -- "${cur#*=}"))
        return 0
    fi
    if [[ $prev == = && COMP_CWORD -ge 2 ]]; then  # "--shape=cr": bash splits at "=" (COMP_WORDBREAKS)
        prev=${COMP_WORDS[COMP_CWORD - 2]}
    fi
    if [[ " $(__cgdev_valued "$path") " == *" $prev "* ]]; then
        # choices, or nothing: `complete -o default` then completes file names
        COMPREPLY=($(compgen -W "$(__cgdev_choices "$path|$prev")" -- "$cur"))
        return 0
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(__cgdev_opts "$path")" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$(__cgdev_subs "$path") $(__cgdev_args "$path")" -- "$cur"))
    fi
    return 0
}

complete -o default -F _cgdev cgdev
"""

ZSH_BODY = r"""
# The command path ("cgdev lab run") of the words before the cursor; flags and their values skipped.
__cgdev_path() {
    local path=cgdev i w skip= names
    for (( i = 2; i < CURRENT; i++ )); do
        w=${words[i]}
        if [[ -n $skip ]]; then skip=; continue; fi
        if [[ $w == -* ]]; then
            [[ $w != *=* && " $(__cgdev_valued "$path") " == *" $w "* ]] && skip=1
            continue
        fi
        names=" ${(j: :)${(@)${(f)"$(__cgdev_subs "$path")"}%%:*}} "
        [[ $names == *" $w "* ]] && path="$path $w"
    done
    print -r -- "$path"
}

_cgdev() {
    local cur=${words[CURRENT]} prev=${words[CURRENT-1]} path choices
    local -a described
    path=$(__cgdev_path)
    if [[ $cur == --*=* ]]; then
        choices=$(__cgdev_choices "$path|${cur%%=*}")
        compset -P '*='
        [[ -n $choices ]] && compadd -- ${=choices} || _files
        return
    fi
    if [[ " $(__cgdev_valued "$path") " == *" $prev "* ]]; then
        choices=$(__cgdev_choices "$path|$prev")
        [[ -n $choices ]] && compadd -- ${=choices} || _files
        return
    fi
    if [[ $cur == -* ]]; then
        described=(${(f)"$(__cgdev_opts "$path")"})
        _describe -t options 'cgdev option' described
        return
    fi
    described=(${(f)"$(__cgdev_subs "$path")"})
    if (( $#described )); then
        _describe -t commands 'cgdev command' described
        return
    fi
    choices=$(__cgdev_args "$path")
    [[ -n $choices ]] && compadd -- ${=choices}
    _files
}

if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then
    _cgdev "$@"
else
    compdef _cgdev cgdev
fi
"""


def script(shell: str, tree: CliCommand | None = None) -> str:
    """The completion script for ``shell`` (``bash`` or ``zsh``)."""
    tree = tree or cgdev_tree()
    header = f"# {shell} completion for cgdev, generated by `cgdev completion {shell}` from its parsers.\n"
    if shell == "zsh":
        return "#compdef cgdev\n" + header + _tables(tree, "__cgdev", described=True) + ZSH_BODY
    return header + _tables(tree, "__cgdev", described=False) + BASH_BODY


def run(args: argparse.Namespace) -> int:
    print(script(args.shell), end="")
    return 0
