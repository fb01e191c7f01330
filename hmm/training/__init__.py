"""The training layer: a training as committed iterations in a store.

The spec (:mod:`.spec`), the store (:mod:`.store`), the commit protocol (:mod:`.commits`), the
step kinds (:mod:`.steps`), the published report (:mod:`.report`) and the ``hmm-em`` command
line (:mod:`.cli`). Imports the core and the distributed layer.
"""
