"""Running ClientVault on one machine: the data dir, the embedded servers and the `up` supervisor."""
