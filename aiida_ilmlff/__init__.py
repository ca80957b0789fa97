"""aiida-ilmlff: AiiDA workflows that build and use machine-learning force fields for ionic liquids.

The workflow follows Park, Ryu & Lee, "Ionic Liquid MD Simulation with MLFFs: DPMD and MACE"
(arXiv:2503.18249): ionic-liquid boxes, equilibrated (EQ) and non-equilibrated (nEQ) training
frames, DFT labels (CP2K, Quantum ESPRESSO), MACE and DeePMD committees, active learning, MD with
the models and the analysis of density, self-diffusion, structure and speciation.
"""

__version__ = '0.1.0.dev0'
