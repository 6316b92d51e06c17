"""Training: one step and its capture (train), one run owned in one place (session), the divergence rule, threads, the memory estimate, and the app's training process with its messages."""
