"""Layer 4, SAE classes: the fast training SAEs, their sparse kernels, and the SAELens loaders for our file layouts."""
