"""The model: the cells (one module per family), the stacked network, its initialisation, and the cells' reference equations that every cell and the compiled loops are checked against."""
