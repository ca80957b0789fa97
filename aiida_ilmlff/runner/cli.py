"""``ilmlff-runner``: the compute-node command of aiida-ilmlff (argparse; no AiiDA import).

Sub-commands (each the ``main(argv)`` of a module of :mod:`aiida_ilmlff.runner`, imported on demand so
``--version`` stays fast):

- ``ilmlff-runner md SETTINGS.json``: MLFF molecular dynamics (:mod:`aiida_ilmlff.runner.md`).
- ``ilmlff-runner evaluate SETTINGS.json``: evaluate models on frames (:mod:`aiida_ilmlff.runner.evaluate`).
- ``ilmlff-runner --version``: prints ``ilmlff-runner <version>`` (the probe of ``aiida-ilmlff setup``).

The process exit status is the sub-command's (:mod:`aiida_ilmlff.runner.contract`). This is the project's only
console script on the compute node.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import typing as t

from aiida_ilmlff import __version__

__all__ = ('COMMANDS', 'main')

#: Sub-command -> (module, one line of help).
COMMANDS: dict[str, tuple[str, str]] = {
    'md': ('aiida_ilmlff.runner.md', 'run MLFF molecular dynamics from a settings JSON'),
    'evaluate': ('aiida_ilmlff.runner.evaluate', 'evaluate MLFF models on frames'),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='ilmlff-runner',
        description="aiida-ilmlff's compute-node runner: MLFF MD and model evaluation with MACE / DeePMD.",
    )
    parser.add_argument('--version', action='version', version=f'ilmlff-runner {__version__}')
    parser.add_argument(
        'command', choices=sorted(COMMANDS), help='; '.join(f'{k}: {v[1]}' for k, v in COMMANDS.items())
    )
    parser.add_argument('args', nargs=argparse.REMAINDER, help='arguments of the sub-command (see its --help)')
    return parser


def main(argv: t.Sequence[str] | None = None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to the sub-command; return its exit status."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    module = importlib.import_module(COMMANDS[args.command][0])
    status = module.main(args.args)
    return int(status or 0)


if __name__ == '__main__':
    sys.exit(main())
