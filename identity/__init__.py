"""Who is who: addresses, keys, canonical JSON, signed envelopes and tokens. Pure: no I/O."""
