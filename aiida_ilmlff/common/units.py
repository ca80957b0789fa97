"""Unit constants (one home each).

``AMU_A3_TO_G_CM3``: a mass density of 1 amu/Å^3 in g/cm^3, ``1 amu / 1e-24 cm^3`` with the atomic mass unit
of ASE (``ase.units._amu`` = 1.66053904e-27 kg, CODATA 2014), the amu the box builder has always used to size
its boxes. The MD runner and the analysis library used the CODATA 2018 value (1.66053906660e-27 kg) before; the
two differ by 1.6e-8 relative, far below any digit the plugin reports.
"""

from __future__ import annotations

__all__ = ('AMU_A3_TO_G_CM3',)

#: 1 amu/Å^3 in g/cm^3: density [g/cm^3] = mass [amu] / volume [Å^3] * this (= ase.units._amu * 1e3 / 1e-24).
AMU_A3_TO_G_CM3 = 1.66053904
