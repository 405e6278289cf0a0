"""The main job (top layer): an ordered list of stages over the library, with typed state passed between them. Nothing in the library imports it."""
