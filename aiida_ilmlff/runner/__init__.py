"""What runs on the compute node: the ``ilmlff-runner`` command (MLFF molecular dynamics and model evaluation).

- :mod:`~aiida_ilmlff.runner.contract`: settings, MD parameters, output files and columns, exit statuses and
  guards: the only module daemon-side code imports (no AiiDA, ASE, torch, mace, deepmd or TensorFlow).
- :mod:`~aiida_ilmlff.runner.cli`: the ``ilmlff-runner`` console script (``md``, ``evaluate``, ``--version``).
- :mod:`~aiida_ilmlff.runner.md`: the MD run loop; :mod:`~aiida_ilmlff.runner.integrators`: the ASE
  integrators of the ensembles; :mod:`~aiida_ilmlff.runner.guards`: the per-step physics checks.
- :mod:`~aiida_ilmlff.runner.evaluate`: energies and forces of models on frames.
- :mod:`~aiida_ilmlff.runner.calculators`: the one model loader (ASE calculators for MACE and DeePMD files).
- :mod:`~aiida_ilmlff.runner.inspect_model`: a model file's metadata (run in a subprocess).
- :mod:`~aiida_ilmlff.runner.mace_e0s`: a standalone script that writes the E0s into a MACE foundation model before
  a fine-tune (copied into the ``mace_run_train`` job and run by that environment's Python).
"""
