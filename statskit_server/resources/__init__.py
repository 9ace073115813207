"""HTTP resources: each translates requests into library calls and nothing more."""
