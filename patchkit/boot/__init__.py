"""One boot of a guest through a ROM (or natively), start to verdict.

``accel`` picks the accelerator, ``layout`` turns where the guest disk sits into a
MachineSpec, ``session`` drives gPXE or SeaBIOS on one QEMU and watches the markers,
``run`` boots once (a run directory, the run disk, the session, the guest's disk checks)
and gives the BootOutcome. Choosing what to boot and recording results is patchkit.validate.
"""
