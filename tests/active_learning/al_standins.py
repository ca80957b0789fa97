"""Stand-in training and labelling work chains for the fast active-learning tests (no MACE, no CP2K).

``StandInTrain`` has the inputs and outputs of ``ilmlff.train`` but its committee is made by a calcfunction:
JSON "models" (see ``al_standin_runner.py``) whose perturbation amplitude falls as the training set grows,
``amplitude = CONFIG['a0'] * (CONFIG['n0'] / n_frames) ** CONFIG['power']`` [eV], so that the committee
deviation shrinks from one iteration to the next as it would with real training.
``StandInLabel`` has the inputs and outputs of
``ilmlff.label`` and labels with EMT (a calcfunction); ``CONFIG['fail']`` makes it reject frames:
``'all'``, or a number of frames per call (the first ones), to test labelling failures.

``StandInActiveLearning`` is ``ilmlff.active_learning`` with these two swapped in; MD and evaluation are
the real CalcJobs run by the stand-in runner code.
"""

from __future__ import annotations

import json
import pathlib
import tempfile

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_ilmlff.data import FramesData, MLFFModelData
from aiida_ilmlff.workflows.active_learning import ActiveLearningWorkChain
from aiida_ilmlff.workflows.label import LabelWorkChain
from aiida_ilmlff.workflows.train import TrainWorkChain

LEVEL_OF_THEORY = 'standin-emt'
#: Knobs of the stand-ins (tests change them with monkeypatch.setitem).
CONFIG = {'a0': 0.12, 'n0': 4, 'power': 1.0, 'fail': 0}


def emt_labels(atoms_list):
    """EMT energies [eV] and forces [eV/Å] of a list of ASE Atoms."""
    from ase.calculators.emt import EMT

    energies, forces = [], []
    for atoms in atoms_list:
        work = atoms.copy()
        work.calc = EMT()
        energies.append(work.get_potential_energy())
        forces.append(work.get_forces())
    return np.array(energies), forces


@calcfunction
def standin_committee(train: FramesData, committee_size: orm.Int, settings: orm.Dict) -> dict:
    """JSON stand-in models: amplitude ``a0 * (n0 / n_frames) ** power`` [eV], a random unit ``q`` per member."""
    options = settings.get_dict()
    amplitude = options['a0'] * (options['n0'] / train.n_frames) ** options['power']
    outputs = {}
    with tempfile.TemporaryDirectory() as folder:
        for k in range(committee_size.value):
            q = np.random.default_rng(1000 * train.n_frames + k).normal(size=3)
            path = pathlib.Path(folder) / f'standin_{k}.model'
            path.write_text(json.dumps({'amplitude': amplitude, 'q': (q / np.linalg.norm(q)).tolist()}))
            outputs[f'model_{k}'] = MLFFModelData.from_file(
                path, 'mace', elements=list(train.elements), r_cut=4.0, dtype='float64', seed=k, inspect=False
            )
    # The validation force RMSE [meV/Å] of the committee (relative trust levels) is taken to be the amplitude.
    valid = {'force_rmse': {'mean': 1000.0 * amplitude, 'std': 0.0, 'n': committee_size.value}}
    outputs['metrics'] = orm.Dict({'standin': True, 'amplitude_eV': amplitude, 'committee': {'valid': valid}})
    return outputs


class StandInTrain(TrainWorkChain):
    """``ilmlff.train`` whose committee is made by :func:`standin_committee` (no training code runs)."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.setup, cls.make_committee)

    def make_committee(self):
        outputs = standin_committee(
            self.inputs.train, self.inputs.committee_size, orm.Dict({key: CONFIG[key] for key in ('a0', 'n0', 'power')})
        )
        self.out('models', {key: node for key, node in outputs.items() if key.startswith('model_')})
        self.out('metrics', outputs['metrics'])


@calcfunction
def standin_labels(frames: FramesData, fail: orm.Str) -> dict:
    """EMT labels of ``frames``; ``fail`` = ``all`` or the number of (first) frames to reject."""
    n = frames.n_frames
    rejected = list(range(n)) if fail.value == 'all' else list(range(min(int(fail.value), n)))
    keep = [i for i in range(n) if i not in rejected]
    outputs = {
        'rejected': orm.Dict(
            {str(i): {'reason': 'scf_not_converged', 'detail': 'stand-in', 'pk': None} for i in rejected}
        ),
        'summary': orm.Dict({'n_frames': n, 'n_labelled': len(keep), 'n_rejected': len(rejected)}),
    }
    if keep:
        subset = frames.select(keep)
        energies, forces = emt_labels(subset.to_ase())
        outputs['labelled'] = subset.with_labels(energies, forces, level_of_theory=LEVEL_OF_THEORY)
    return outputs


class StandInLabel(LabelWorkChain):
    """``ilmlff.label`` labelling with EMT in a calcfunction; rejects frames as ``CONFIG['fail']`` says."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.label)

    def label(self):
        outputs = standin_labels(self.inputs.frames, orm.Str(str(CONFIG['fail'])))
        for name, node in outputs.items():
            self.out(name, node)
        if 'labelled' not in outputs:
            return self.exit_codes.ERROR_NO_FRAME_LABELLED
        if outputs['summary']['n_rejected']:
            n = outputs['summary']
            return self.exit_codes.ERROR_TOO_MANY_REJECTED.format(n_rejected=n['n_rejected'], n_frames=n['n_frames'])
        return None


class StandInActiveLearning(ActiveLearningWorkChain):
    """``ilmlff.active_learning`` with the stand-in training and labelling."""

    _train_process = StandInTrain
    _label_process = StandInLabel


def copper_atoms(n: int, seed: int = 0, rattle: float = 0.05):
    """``n`` rattled 8-atom fcc Cu boxes (a = 3.6 Å) labelled with EMT (the stand-in level of theory)."""
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = bulk('Cu', 'fcc', a=3.6, cubic=True).repeat((2, 1, 1))
        atoms.positions += rng.normal(0.0, rattle, atoms.positions.shape)
        frames.append(atoms)
    energies, forces = emt_labels(frames)
    for atoms, energy, force in zip(frames, energies, forces):
        atoms.calc = SinglePointCalculator(atoms, energy=float(energy), forces=force)
        atoms.info['origin'] = 'nEQ'
        atoms.info['level_of_theory'] = LEVEL_OF_THEORY
    return frames
