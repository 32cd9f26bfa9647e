"""Latent model-predictive control: energies, CEM and MPPI planners, and the receding-horizon loop."""
