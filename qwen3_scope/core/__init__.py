"""Layer 0, core: errors, atomic file io, devices and threads, config-to-CLI, SAELens/torch compatibility, portable names. Imports nothing else of qwen3_scope."""
