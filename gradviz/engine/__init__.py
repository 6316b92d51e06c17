"""The Qt-free training engine: cells, network, tasks, training step and capture."""
