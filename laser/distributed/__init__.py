"""Several processes (trainer=ddp|fsdp): collectives that keep ranks in step, and FSDP2 sharding."""
