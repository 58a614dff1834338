"""The allocator's math: latent state, regimes (stress score, HMM, jump model), risk scalars, calibration."""
