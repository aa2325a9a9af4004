"""`patchkit report`: one static HTML page per series revision (``data`` gathers, ``page`` renders)."""
