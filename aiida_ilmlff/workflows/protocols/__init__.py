"""Protocols: named input presets (``fast``, ``balanced``, ``stringent``) for the work chains, as plain data.

:class:`ProtocolMixin` is aiida-quantumespresso's ``ProtocolMixin`` (``get_available_protocols``,
``get_default_protocol``, ``get_protocol_inputs``) with the protocol files kept in this folder and one change
of policy: an override key that no protocol, port or meta input knows is a ``ValueError`` naming its full
key path (aiida-quantumespresso only warns), so a misspelt key can never silently drop a user's setting.

A protocol file has the layout::

    default_protocol: fast
    default_inputs: {...}          # merged under every protocol
    protocols:
      fast:
        description: '...'         # required
        ...                        # overrides of default_inputs
    meta_inputs_schema: {...}      # keys that are not ports but that overrides may set (nested like the inputs)
    open_inputs:                   # free-form mappings: any key below these dotted paths is accepted
      - cp2k.cp2k.parameters       # (`*` stands for any one key)

The inputs that :meth:`ProtocolMixin.get_protocol_inputs` returns are plain values (numbers, strings, lists,
nested dicts): ``get_builder_from_protocol`` turns them into nodes at the end.
"""

from __future__ import annotations

import collections.abc
import copy
import pathlib
import typing as t

import yaml
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin as _QeProtocolMixin

__all__ = ('PROTOCOL_DIR', 'ProtocolMixin', 'UnknownOverrideError', 'check_override_keys', 'recursive_merge')

PROTOCOL_DIR = pathlib.Path(__file__).resolve().parent

#: Marks a node of the key tree below which any key is accepted (never collides with a key).
_OPEN = object()


def recursive_merge(left: t.Mapping, right: t.Mapping) -> dict:
    """Return ``left`` updated recursively with ``right`` (``right`` wins; neither argument is changed).

    Nested mappings are merged key by key; any other value (lists included) in ``right`` replaces the one in
    ``left``. Unlike aiida-quantumespresso's ``recursive_merge`` the result shares no nested object with the
    arguments (callers here edit the merged inputs in place).
    """
    merged = copy.deepcopy(dict(left))
    for key, value in right.items():
        if isinstance(value, collections.abc.Mapping) and isinstance(merged.get(key), collections.abc.Mapping):
            merged[key] = recursive_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class UnknownOverrideError(ValueError):
    """An override key that the protocol file, the ports and the meta inputs do not know.

    :param path: the full dotted key path, e.g. ``meta_parameters.label_overides``.
    :param owner: the name of the work chain whose overrides were checked.
    """

    def __init__(self, path: str, owner: str, known: t.Iterable[str] = ()):
        self.path = path
        self.owner = owner
        self.known = sorted(str(key) for key in known)
        super().__init__(self._message())

    def _message(self) -> str:
        hint = f'; known keys there: {", ".join(self.known)}' if self.known else ''
        return f'`overrides`: unknown key `{self.path}` for {self.owner}{hint}'

    def prefixed(self, prefix: str) -> UnknownOverrideError:
        """The same error with ``prefix`` in front of the path (for overrides nested in a parent's overrides)."""
        return UnknownOverrideError(f'{prefix}.{self.path}', self.owner, self.known)


def _key_tree(value: t.Any) -> t.Any:
    """The keys of a nested mapping as a tree of dicts (leaves are ``None``)."""
    if isinstance(value, collections.abc.Mapping):
        return {key: _key_tree(item) for key, item in value.items()}
    return None


def _port_tree(namespace: t.Any) -> dict:
    """The keys of a port namespace as a tree; a dynamic namespace without declared ports is open."""
    from plumpy.ports import PortNamespace

    tree: dict = {}
    for key, port in namespace.items():
        tree[key] = _port_tree(port) if isinstance(port, PortNamespace) else None
    if namespace.dynamic and not tree:
        tree[_OPEN] = True
    return tree


def _merge_trees(left: t.Any, right: t.Any) -> t.Any:
    if isinstance(left, dict) and isinstance(right, dict):
        merged = dict(left)
        for key, value in right.items():
            merged[key] = _merge_trees(merged.get(key), value)
        return merged
    return right if isinstance(right, dict) else left if isinstance(left, dict) else None


def _open_path(tree: dict, path: str) -> None:
    """Mark the dotted ``path`` of ``tree`` open (``*`` matches every existing key at its level)."""

    def mark(node: dict, parts: list[str]) -> None:
        head, rest = parts[0], parts[1:]
        keys = [key for key in node if key is not _OPEN] if head == '*' else [head]
        for key in keys:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            if rest:
                mark(child, rest)
            else:
                child[_OPEN] = True

    mark(tree, path.split('.'))


def check_override_keys(overrides: t.Mapping, tree: t.Mapping, owner: str, path: str = '') -> None:
    """Raise :class:`UnknownOverrideError` for the first key of ``overrides`` (at any depth) not in ``tree``.

    :param overrides: the user's nested overrides.
    :param tree: the known keys as nested dicts; a node holding the open marker accepts any key below it, a
        leaf (``None``: a port or a protocol value that is not a mapping) accepts any value.
    :param owner: named in the message. :param path: the dotted path of ``overrides`` (for nested calls).
    """
    if tree.get(_OPEN):
        return
    for key, value in overrides.items():
        full = f'{path}.{key}' if path else str(key)
        if key not in tree:
            raise UnknownOverrideError(full, owner, (k for k in tree if k is not _OPEN))
        child = tree[key]
        if isinstance(value, collections.abc.Mapping) and isinstance(child, dict):
            check_override_keys(value, child, owner, full)


class ProtocolMixin(_QeProtocolMixin):
    """aiida-quantumespresso's ``ProtocolMixin`` with the YAML files of ``aiida_ilmlff/workflows/protocols``.

    Subclasses set ``_protocol_file`` to the file name relative to this folder (for example ``'label.yaml'``).
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
        """Return the plain inputs of ``protocol``: ``default_inputs``, merged with the protocol, then ``overrides``.

        :param protocol: the protocol name; the file's ``default_protocol`` when ``None``.
        :param overrides: a mapping (or a YAML file) with the same nesting as the inputs; merged last.
        :returns: nested dicts of plain values (no nodes).
        :raises ValueError: for an unknown protocol name; :class:`UnknownOverrideError` (a ``ValueError``) for an
            override key, at any depth, that is neither a port, a protocol input, a meta input nor below an open path.
        """
        data = cls._load_protocol_file()
        protocol = cls.check_protocol(protocol)
        inputs = recursive_merge(data.get('default_inputs') or {}, data['protocols'][protocol])
        inputs.pop('description', None)

        if isinstance(overrides, pathlib.Path):
            with overrides.open(encoding='utf-8') as handle:
                overrides = yaml.safe_load(handle)
        if overrides:
            cls._validate_override_keys(overrides)
            inputs = recursive_merge(inputs, overrides)
        return inputs

    @classmethod
    def get_override_key_tree(cls) -> dict:
        """The keys an override may use: ports, every protocol's inputs, ``meta_inputs_schema``, ``open_inputs``."""
        data = cls._load_protocol_file()
        tree = _key_tree(data.get('default_inputs') or {})
        for values in data['protocols'].values():
            tree = _merge_trees(tree, _key_tree({k: v for k, v in values.items() if k != 'description'}))
        tree = _merge_trees(tree, _key_tree(data.get('meta_inputs_schema') or {}))
        spec = getattr(cls, 'spec', None)
        if spec is not None:
            tree = _merge_trees(tree, _port_tree(spec().inputs))
        for path in data.get('open_inputs') or ():
            _open_path(tree, path)
        return tree

    @classmethod
    def _validate_override_keys(cls, overrides: t.Mapping) -> None:
        """Raise :class:`UnknownOverrideError` for an unknown key at any depth (not a warning)."""
        check_override_keys(overrides, cls.get_override_key_tree(), cls.__name__)
