"""Building the firmware: make in a tree, checked ROMs, reuse by content, ``--each-patch``.

Each module imports only those after it: each_patch, series, cache, make, keys, warnings.
"""
