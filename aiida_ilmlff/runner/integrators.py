"""ASE integrators of the MD ensembles and their state for checkpoints (runs on the compute node).

``nve``: velocity Verlet; ``nvt``: Langevin (friction ``friction_per_fs``; the run keeps the centre of mass
fixed with ``FixCom``) or Bussi (``tau_t_fs``); ``npt``: isotropic MTK with Nose-Hoover chains (``tau_t_fs``,
``tau_p_fs``, ``pressure_bar``, ``tchain``, ``pchain``); ``npt_berendsen``: Berendsen (``tau_t_fs``,
``tau_p_fs``, ``compressibility_per_bar``). Parameters as in :data:`aiida_ilmlff.runner.contract.PARAMETERS`
(resolved). ASE is imported when an integrator is made.
"""

from __future__ import annotations

import typing as t

import numpy as np

__all__ = ('PASS_FORCES', 'integrator_state', 'make_integrator', 'restore_integrator_state', 'uses_fixcom')

#: Integrators whose ``step(forces)`` may be given the forces returned by their previous step.
PASS_FORCES = ('VelocityVerlet', 'Langevin', 'Bussi')


def uses_fixcom(parameters: dict) -> bool:
    """Whether the run keeps the centre of mass fixed with ASE's ``FixCom`` (Langevin: its noise would move it)."""
    return parameters['ensemble'] == 'nvt' and parameters['thermostat'] == 'langevin'


def make_integrator(atoms, parameters: dict, rng: np.random.Generator):
    """The ASE integrator for ``parameters['ensemble']`` (Langevin expects the ``FixCom`` constraint set)."""
    from ase import units

    dt = parameters['timestep_fs'] * units.fs
    ensemble = parameters['ensemble']
    temperature = parameters['temperature_K']
    if ensemble == 'nve':
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    if ensemble == 'nvt' and parameters['thermostat'] == 'langevin':
        from ase.md.langevin import Langevin

        return Langevin(
            atoms,
            timestep=dt,
            temperature_K=temperature,
            friction=parameters['friction_per_fs'] / units.fs,
            fixcm=False,
            rng=rng,
        )
    if ensemble == 'nvt':
        from ase.md.bussi import Bussi

        return Bussi(atoms, timestep=dt, temperature_K=temperature, taut=parameters['tau_t_fs'] * units.fs, rng=rng)
    if ensemble == 'npt':
        from ase.md.nose_hoover_chain import IsotropicMTKNPT

        return IsotropicMTKNPT(
            atoms,
            timestep=dt,
            temperature_K=temperature,
            pressure_au=parameters['pressure_bar'] * units.bar,
            tdamp=parameters['tau_t_fs'] * units.fs,
            pdamp=parameters['tau_p_fs'] * units.fs,
            tchain=parameters['tchain'],
            pchain=parameters['pchain'],
        )
    from ase.md.nptberendsen import NPTBerendsen

    return NPTBerendsen(
        atoms,
        timestep=dt,
        temperature_K=temperature,
        taut=parameters['tau_t_fs'] * units.fs,
        pressure_au=parameters['pressure_bar'] * units.bar,
        taup=parameters['tau_p_fs'] * units.fs,
        compressibility_au=parameters['compressibility_per_bar'] / units.bar,
    )


def integrator_state(dyn) -> dict[str, t.Any]:
    """The integrator's internal state as plain JSON data (class name, RNG state, chain variables)."""
    state: dict[str, t.Any] = {'class': type(dyn).__name__}
    rng = getattr(dyn, 'rng', None)
    if isinstance(rng, np.random.Generator):
        state['rng'] = rng.bit_generator.state
    if hasattr(dyn, 'transferred_energy'):
        state['transferred_energy'] = float(dyn.transferred_energy)
    thermostat = getattr(dyn, '_thermostat', None)
    if thermostat is not None:
        state['eta'] = thermostat._eta.tolist()
        state['p_eta'] = thermostat._p_eta.tolist()
    barostat = getattr(dyn, '_barostat', None)
    if barostat is not None:
        state['xi'] = barostat._xi.tolist()
        state['p_xi'] = barostat._p_xi.tolist()
        state['p_eps'] = float(dyn._p_eps)
    return state


def restore_integrator_state(dyn, state: dict[str, t.Any]) -> bool:
    """Put a saved :func:`integrator_state` back into ``dyn`` if it is of the same class; return whether it was."""
    if not state or state.get('class') != type(dyn).__name__:
        return False
    rng = getattr(dyn, 'rng', None)
    if 'rng' in state and isinstance(rng, np.random.Generator):
        rng.bit_generator.state = state['rng']
    if 'transferred_energy' in state:
        dyn.transferred_energy = state['transferred_energy']
    thermostat = getattr(dyn, '_thermostat', None)
    if thermostat is not None and 'eta' in state and len(state['eta']) == len(thermostat._eta):
        thermostat._eta = np.array(state['eta'], dtype=float)
        thermostat._p_eta = np.array(state['p_eta'], dtype=float)
    barostat = getattr(dyn, '_barostat', None)
    if barostat is not None and 'xi' in state and len(state['xi']) == len(barostat._xi):
        barostat._xi = np.array(state['xi'], dtype=float)
        barostat._p_xi = np.array(state['p_xi'], dtype=float)
        dyn._p_eps = float(state['p_eps'])
    return True
