"""Noise schedulers: Hallo's DDIM (the faithful default) and faster solvers for the presets."""

from __future__ import annotations

from typing import Any

# The original's scripts/inference.py with enable_zero_snr (the later "scaled_linear" update has no effect).
HALLO_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "clip_sample": False,
    "steps_offset": 1,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
    "set_alpha_to_one": True,
}

SOLVERS = ("ddim", "dpmpp")


def make_scheduler(solver: str = "ddim"):
    """A diffusers scheduler configured exactly as Hallo's DDIM, or DPM-Solver++ on the same noise schedule."""
    if solver == "ddim":
        from diffusers import DDIMScheduler

        return DDIMScheduler(**HALLO_SCHEDULER_CONFIG)
    if solver == "dpmpp":
        from diffusers import DPMSolverMultistepScheduler

        cfg = {k: v for k, v in HALLO_SCHEDULER_CONFIG.items() if k not in ("clip_sample", "set_alpha_to_one")}
        return DPMSolverMultistepScheduler(
            **cfg, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero"
        )
    raise ValueError(f"unknown solver {solver!r}; use one of {SOLVERS}")
