"""Render many videos: ``hallo-batch JOBS``.

A jobs file (JSONL or CSV, one video per row, any ``hallo-render`` option as a column) is checked as a whole,
then rendered by workers that each load the networks once: in this process by default (``local.py``), or as
a Ray Data pipeline with one renderer actor per GPU (``ray_runner.py``, the only module that imports Ray).

Modules in data-flow order: ``options.py`` (hallo-render's own options as columns and defaults),
``workflow.py`` (defaults from a ComfyUI workflow), ``jobs.py`` (reading and checking the file),
``identity.py`` (what makes a job finished or changed), ``worker.py`` (one job on a kept ``Renderer``),
``local.py`` / ``ray_runner.py`` (who runs the workers), ``results.py`` (the results table, the progress bar),
``cli.py`` (the command).
"""
