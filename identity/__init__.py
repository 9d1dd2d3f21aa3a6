"""Who is who: addresses, keys, canonical JSON, signed envelopes and tokens. Pure: no I/O.

Modules: `address` (section 1), `keys` and `b64` (section 2) with `edwards25519` (which keys
are weak), `canonical` (RFC 8785), `envelope` (section 3), `tokens` (section 4), `webhook`
(section 6), `ids`, and `errors`, the one error family. Key files (`PrivateKey.save` / `load`)
are the only file access.
"""
