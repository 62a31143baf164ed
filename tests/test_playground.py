"""README command 1 (the playground) works end to end."""
import subprocess
import sys


def test_playground_runs_and_cleans_up(tmp_path):
    p = subprocess.run([sys.executable, "-m", "contrib.playground", "--no-wait", f"--dir={tmp_path / 'pg'}"],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    assert "node1 connected to node2 over BOLT 8" in p.stdout
    assert '"num_peers": 1' in p.stdout
    assert "== node1 listfunds" in p.stdout and '"amount_msat": 5000000000' in p.stdout
    assert "node1 paid it: 10000000 msat delivered" in p.stdout
    assert "== node1 listpays" in p.stdout and '"status": "complete"' in p.stdout
    assert not (tmp_path / "pg" / "node1" / "regtest" / "lightning-rpc").exists()
