"""The analysis of a capture: the spectrum of the recurrent weights, the textbook bounds, the gradient paths of each cell's picture, and Pascanu's cliff."""
