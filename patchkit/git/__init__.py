"""git: the only place patchkit runs git, and the only gitpython user.

``cmd`` runs git (the command line for every module, gitpython helpers for this package)
with one environment; ``identity`` is who and when commits say; ``state`` is the record of
what apply put on each branch and the switch marker; ``worktree`` the series' work tree
(clone, lock, branches, export, tags, whether it may move); ``patchid`` recognises a change
upstream; ``conflicts`` says why a patch does not go on; ``apply`` puts a series on its
branch; ``refresh`` captures the branch back into patch files; ``rangediff`` compares
two versions.
"""
