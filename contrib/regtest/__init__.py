"""regtestd: a small bitcoind-compatible regtest chain for the project's tests.

Every block is validated and connected by Bitcoin Core's own consensus code
(libbitcoinkernel through py-bitcoinkernel); this package adds what the
kernel does not have: a JSON-RPC server speaking bitcoind's dialect, a
mempool with bitcoind's acceptance checks, a block builder, a UTXO set and
transaction index in SQLite, and ZMQ notifications.

Start it like bitcoind: ``regtestd -regtest -datadir=DIR -rpcport=N ...``.
Test helpers live in :mod:`contrib.regtest.testing`.
"""
