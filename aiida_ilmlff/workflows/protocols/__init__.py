"""Protocols: named, versioned input presets (``fast``, ``balanced``, ``stringent``) for the work chains.

A work chain that mixes in :class:`ProtocolMixin` and sets ``_protocol_file`` (the YAML file name in this
folder) gets ``get_available_protocols``, ``get_default_protocol`` and ``get_protocol_inputs``, the same
interface as aiida-quantumespresso's ``ProtocolMixin``. A protocol file has the layout::

    default_protocol: fast
    default_inputs: {...}          # merged under every protocol
    protocols:
      fast:
        description: '...'         # required
        ...                        # overrides of default_inputs
    meta_inputs_schema: {...}      # optional: keys that are not ports but that overrides may set

Unknown protocol names raise ``ValueError`` naming the ``protocol`` argument and the valid names.
"""

from __future__ import annotations

import collections.abc
import copy
import pathlib
import typing as t
import warnings

import yaml

__all__ = ('PROTOCOL_DIR', 'ProtocolMixin', 'recursive_merge')

PROTOCOL_DIR = pathlib.Path(__file__).resolve().parent


def recursive_merge(left: t.Mapping, right: t.Mapping) -> dict:
    """Return ``left`` updated recursively with ``right`` (``right`` wins; neither argument is changed).

    Nested mappings are merged key by key; any other value (lists included) in ``right`` replaces the one in
    ``left``.
    """
    merged = copy.deepcopy(dict(left))
    for key, value in right.items():
        if isinstance(value, collections.abc.Mapping) and isinstance(merged.get(key), collections.abc.Mapping):
            merged[key] = recursive_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class ProtocolMixin:
    """Build input mappings for a work chain from a YAML protocol file in ``aiida_ilmlff/workflows/protocols``.

    Subclasses set ``_protocol_file`` to the file name (for example ``'label.yaml'``) or override
    :meth:`get_protocol_filepath`.
    """

    _protocol_file: t.ClassVar[str | None] = None

    @classmethod
    def get_protocol_filepath(cls) -> pathlib.Path:
        """Return the path of the YAML file that defines the protocols of this work chain.

        :raises ValueError: if the class does not name a protocol file.
        """
        if not cls._protocol_file:
            raise ValueError(f'{cls.__name__} does not define `_protocol_file`')
        return PROTOCOL_DIR / cls._protocol_file

    @classmethod
    def _load_protocol_file(cls) -> dict:
        """Return the parsed protocol file (``yaml.safe_load``)."""
        with cls.get_protocol_filepath().open(encoding='utf-8') as handle:
            return yaml.safe_load(handle)

    @classmethod
    def get_default_protocol(cls) -> str:
        """Return the name of the protocol used when none is given."""
        return cls._load_protocol_file()['default_protocol']

    @classmethod
    def get_available_protocols(cls) -> dict[str, dict]:
        """Return ``{name: {'description': ...}}`` for every protocol of this work chain."""
        data = cls._load_protocol_file()
        return {name: {'description': values['description']} for name, values in data['protocols'].items()}

    @classmethod
    def check_protocol(cls, protocol: str | None) -> str:
        """Return ``protocol`` (or the default) after checking that it exists.

        :raises ValueError: naming the ``protocol`` argument and the available names.
        """
        data = cls._load_protocol_file()
        protocol = protocol or data['default_protocol']
        if protocol not in data['protocols']:
            names = ', '.join(f'`{name}`' for name in data['protocols'])
            raise ValueError(f'`protocol`: unknown protocol `{protocol}` for {cls.__name__}; choose one of {names}')
        return protocol

    @classmethod
    def get_protocol_inputs(
        cls,
        protocol: str | None = None,
        overrides: t.Mapping | pathlib.Path | None = None,
    ) -> dict:
        """Return the inputs of ``protocol`` (``default_inputs`` merged with the protocol, then ``overrides``).

        :param protocol: the protocol name; the file's ``default_protocol`` when ``None``.
        :param overrides: a mapping (or a YAML file) with the same nesting as the inputs; merged last.
        :raises ValueError: for an unknown protocol name.
        """
        data = cls._load_protocol_file()
        protocol = cls.check_protocol(protocol)
        inputs = recursive_merge(data.get('default_inputs') or {}, data['protocols'][protocol])
        inputs.pop('description', None)

        if isinstance(overrides, pathlib.Path):
            with overrides.open(encoding='utf-8') as handle:
                overrides = yaml.safe_load(handle)
        if overrides:
            cls._warn_unknown_override_keys(overrides, data.get('meta_inputs_schema') or {})
            inputs = recursive_merge(inputs, overrides)
        return inputs

    @classmethod
    def _warn_unknown_override_keys(cls, overrides: t.Mapping, meta_schema: t.Mapping) -> None:
        """Warn about top-level override keys that are neither input ports nor protocol meta inputs."""
        try:
            known = set(cls.spec().inputs.keys())  # type: ignore[attr-defined]
        except AttributeError:
            return
        known |= set(meta_schema)
        for key in overrides:
            if key not in known:
                warnings.warn(f'{cls.__name__}: unrecognised key in `overrides`: `{key}`', stacklevel=3)
