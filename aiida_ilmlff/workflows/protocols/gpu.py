"""The ``gpu`` protocol option of the training and MD work chains: run the job on GPUs.

``gpu`` is a meta input of ``train/mace.yaml``, ``train/deepmd.yaml`` and ``md/base.yaml`` (absent or ``null``:
CPU, the default), given through ``overrides``, e.g. ``overrides={'gpu': {'gres': 'gpu:1'}}``
(``ilmlff.train``: ``overrides={'member': {'gpu': {...}}}``). Its keys:

- ``gres``: a Slurm generic resource, e.g. ``gpu:1`` or ``gpu:a100:2``: the job script gets the line
  ``#SBATCH --gres=<gres>`` (``metadata.options.custom_scheduler_commands``; AiiDA's ``resources`` of
  ``core.slurm`` have no GPU key). Slurm then sets ``CUDA_VISIBLE_DEVICES`` to the GPUs it gives the job.
- ``cuda_visible_devices``: e.g. ``'0'`` or ``'0,1'``: exported as ``CUDA_VISIBLE_DEVICES`` in the job script
  (``metadata.options.environment_variables``): for a computer without a GPU-aware scheduler (``core.direct``
  on a workstation); leave it out under Slurm.

At least one of the two is required. With ``gpu`` set, MACE trains with ``parameters.device = cuda`` and the
runner's MD uses ``settings.device = cuda`` (a MACE model; a DeePMD model uses the device its build finds, as does
``dp`` for DeePMD training: the GPU build of deepmd-kit needs only the visible GPU).
"""

from __future__ import annotations

import collections.abc
import re
import typing as t

__all__ = ('GPU_KEYS', 'apply_gpu', 'check_gpu')

#: The keys of the ``gpu`` option and their meaning.
GPU_KEYS = {
    'gres': 'Slurm generic resource (`#SBATCH --gres=<gres>`), e.g. gpu:1',
    'cuda_visible_devices': 'CUDA_VISIBLE_DEVICES of the job (no GPU-aware scheduler), e.g. 0 or 0,1',
}
_GRES = re.compile(r'^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)*(,[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)*)*$')
_DEVICES = re.compile(r'^[A-Za-z0-9_-]+(,[A-Za-z0-9_-]+)*$')


def check_gpu(value: t.Any, where: str = 'gpu') -> str | None:
    """A message naming what is wrong with the ``gpu`` option ``value`` and the fix, or ``None`` when fine."""
    if value is None:
        return None
    if not isinstance(value, collections.abc.Mapping):
        return f'`{where}` must be a mapping with `gres` and/or `cuda_visible_devices`, got {value!r}'
    unknown = sorted(set(value) - set(GPU_KEYS))
    if unknown:
        return f'`{where}`: unknown key(s) {unknown}; known: {", ".join(sorted(GPU_KEYS))}'
    gres, devices = value.get('gres'), value.get('cuda_visible_devices')
    if gres is None and devices is None:
        return f'`{where}` needs `gres` (Slurm, e.g. gpu:1) or `cuda_visible_devices` (e.g. 0), or set it to null'
    if gres is not None and (not isinstance(gres, str) or not _GRES.match(gres)):
        return f'`{where}.gres` must be a Slurm gres string such as gpu:1 or gpu:a100:2 (no spaces), got {gres!r}'
    if devices is not None:
        text = str(devices) if isinstance(devices, int) and not isinstance(devices, bool) else devices
        if not isinstance(text, str) or not _DEVICES.match(text):
            return f'`{where}.cuda_visible_devices` must be GPU indices or UUIDs such as 0 or 0,1, got {devices!r}'
    return None


def apply_gpu(calc: dict, gpu: t.Mapping | None, device: tuple[str, str] | None, where: str = 'gpu') -> None:
    """Set the GPU inputs of the plain CalcJob namespace ``calc`` in place (nothing when ``gpu`` is ``None``).

    :param calc: plain inputs of one CalcJob (``parameters``, ``settings``, ``metadata``...).
    :param gpu: the ``gpu`` option (see the module docstring).
    :param device: where the CalcJob takes its device (``('parameters', 'device')`` for MACE, ``('settings',
        'device')`` for the MD runner), or ``None`` (DeePMD).
    :raises ValueError: the message of :func:`check_gpu`.
    """
    message = check_gpu(gpu, where)
    if message:
        raise ValueError(message)
    if gpu is None:
        return
    options = calc.setdefault('metadata', {}).setdefault('options', {})
    if gpu.get('gres') is not None:
        line = f'#SBATCH --gres={gpu["gres"]}'
        existing = options.get('custom_scheduler_commands') or ''
        if line not in existing.splitlines():
            options['custom_scheduler_commands'] = f'{existing}\n{line}' if existing else line
    if gpu.get('cuda_visible_devices') is not None:
        variables = dict(options.get('environment_variables') or {})
        variables['CUDA_VISIBLE_DEVICES'] = str(gpu['cuda_visible_devices'])
        options['environment_variables'] = variables
    if device is not None:
        calc.setdefault(device[0], {})[device[1]] = 'cuda'
